"""The package holds no code that only tests or benchmarks use: references and baselines live in
tests/references/ (docs/architecture.md), and app/ never imports from tests/ or bench/."""

from __future__ import annotations

import ast
import re
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app"
#: Names that mark a test reference or a benchmark baseline.
TEST_ONLY_NAME = re.compile(r"reference|monolithic", re.IGNORECASE)
#: Top-level packages that app/ must not import.
OUTSIDE_APP = {"tests", "bench", "references"}


def _definitions(tree: ast.Module) -> list[str]:
    """Names of the module's functions and classes, and of the methods of its classes."""
    names = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.append(node.name)
        if isinstance(node, ast.ClassDef):
            names += [
                f"{node.name}.{item.name}"
                for item in node.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
            ]
    return names


def _imported_roots(tree: ast.Module) -> set[str]:
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def _modules() -> list[tuple[str, ast.Module]]:
    return [
        (str(path.relative_to(APP.parent)), ast.parse(path.read_text(encoding="utf-8")))
        for path in sorted(APP.rglob("*.py"))
    ]


def test_app_defines_no_reference_or_baseline() -> None:
    found = [
        f"{name}: {definition}"
        for name, tree in _modules()
        for definition in _definitions(tree)
        if TEST_ONLY_NAME.search(definition)
    ]
    assert found == []


def test_app_imports_nothing_from_tests_or_bench() -> None:
    found = [
        f"{name}: {root}"
        for name, tree in _modules()
        for root in _imported_roots(tree) & OUTSIDE_APP
    ]
    assert found == []


def test_the_checks_see_a_reference_and_an_import_from_tests() -> None:
    tree = ast.parse(
        "from tests.references.roi_spp import x\n"
        "class A:\n    def search_monolithic(self): ...\n"
        "def roi_spp_reference(): ...\n"
    )
    assert [d for d in _definitions(tree) if TEST_ONLY_NAME.search(d)] == [
        "A.search_monolithic",
        "roi_spp_reference",
    ]
    assert _imported_roots(tree) & OUTSIDE_APP == {"tests"}
