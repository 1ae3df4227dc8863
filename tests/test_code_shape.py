"""The package keeps the shape docs/architecture.md promises: short functions, classes of one idea.

A function longer than ``MAX_FUNCTION_LINES`` or a class longer than ``MAX_CLASS_LINES`` needs
its reason written next to it: a comment starting ``# long:`` on its ``def``/``class`` line or
on the line just above it (or above its decorators).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[1] / "app"
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


@pytest.mark.parametrize(
    "path", sorted(APP.rglob("*.py")), ids=lambda p: str(p.relative_to(APP.parent))
)
def test_functions_and_classes_stay_short(path: Path) -> None:
    assert oversized(path.read_text(), str(path.relative_to(APP.parent))) == []
