"""The README starts with the two commands a fresh machine needs, and CI runs the second."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def bash_blocks(markdown: str) -> list[str]:
    """The bodies of the fenced ``bash`` blocks, in order."""
    return [m.group(1).strip() for m in re.finditer(r"```bash\n(.*?)```", markdown, re.S)]


def test_bash_blocks_are_read_in_order() -> None:
    text = "x\n```bash\na b\n```\n```json\n{}\n```\n```bash\nc\n```\n"
    assert bash_blocks(text) == ["a b", "c"]


def test_readme_opens_with_the_serve_and_test_commands() -> None:
    serve, test = bash_blocks((ROOT / "README.md").read_text())[:2]
    for command in (serve, test):
        assert "\n" not in command
        assert command.startswith("test -d .venv || python3 -m venv .venv;")
    assert "uvicorn app.main:app" in serve
    assert ".venv/bin/lint-imports" in test
    assert ".venv/bin/pytest -q --durations=15" in test


def test_ci_runs_the_readme_test_command() -> None:
    test = bash_blocks((ROOT / "README.md").read_text())[1]
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test in ci_lines
