"""The code keeps the shape docs/architecture.md promises: short functions, classes of one idea.

It covers the package (app/), the benchmark scripts (bench/) and any Python script under
deploy/ (a ``.py`` file, or a file whose first line names Python).

A function longer than ``MAX_FUNCTION_LINES`` or a class longer than ``MAX_CLASS_LINES`` needs
its reason written next to it: a comment starting ``# long:`` on its ``def``/``class`` line or
on the line just above it (or above its decorators).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Folders whose Python files keep the shape.
CHECKED_FOLDERS = ("app", "bench", "deploy")
MAX_FUNCTION_LINES = 80
MAX_CLASS_LINES = 250
REASON_MARK = "# long:"


def oversized(source: str, path: str) -> list[str]:
    """``path:line name (N lines)`` for each function or class over its limit without a reason."""
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            limit = MAX_FUNCTION_LINES
        elif isinstance(node, ast.ClassDef):
            limit = MAX_CLASS_LINES
        else:
            continue
        assert node.end_lineno is not None
        length = node.end_lineno - node.lineno + 1
        if length <= limit:
            continue
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        nearby = lines[max(first - 2, 0) : node.lineno]  # the line above, decorators, the def
        if any(REASON_MARK in line for line in nearby):
            continue
        found.append(f"{path}:{node.lineno} {node.name} ({length} lines > {limit})")
    return found


def test_checker_flags_a_long_function_and_accepts_a_reason() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    long_function = f"def f():\n{body}\n"
    assert oversized(long_function, "m.py") == [
        f"m.py:1 f ({MAX_FUNCTION_LINES + 1} lines > {MAX_FUNCTION_LINES})"
    ]
    assert oversized(f"# long: one table, read top to bottom\n{long_function}", "m.py") == []
    short = "def g():\n    return 1\n"
    assert oversized(short, "m.py") == []


def is_python(path: Path) -> bool:
    """A ``.py`` file, or an executable-style script whose ``#!`` line names Python."""
    if path.suffix == ".py":
        return True
    if path.suffix or not path.is_file():
        return False
    with path.open("rb") as file:
        first = file.readline(200)
    return first.startswith(b"#!") and b"python" in first


def python_files(root: Path = REPO_ROOT) -> list[Path]:
    """Every Python file under :data:`CHECKED_FOLDERS` of ``root``."""
    return sorted(
        path
        for folder in CHECKED_FOLDERS
        for path in (root / folder).rglob("*")
        if "__pycache__" not in path.parts and is_python(path)
    )


def test_the_checked_files_include_bench_and_python_scripts_under_deploy(tmp_path: Path) -> None:
    for relative, text in {
        "app/a.py": "",
        "bench/b.py": "",
        "deploy/tool": "#!/usr/bin/env python3\n",
        "deploy/run.sh": "#!/bin/sh\n",
        "deploy/notes": "text\n",
    }.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    found = {str(p.relative_to(tmp_path)) for p in python_files(tmp_path)}
    assert found == {"app/a.py", "bench/b.py", "deploy/tool"}
    assert any(p.parts[-2] == "bench" for p in python_files())


@pytest.mark.parametrize("path", python_files(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_functions_and_classes_stay_short(path: Path) -> None:
    assert oversized(path.read_text(), str(path.relative_to(REPO_ROOT))) == []
