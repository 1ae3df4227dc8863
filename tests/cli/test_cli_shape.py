"""The CLI's shape: one ``add_parser`` per command module, help on every option, the release
scales and the literal choices written once, and ``sys.argv`` read only under ``app/cli``."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import get_args

import pytest

from app import cli
from app.cli import COMMAND_GROUPS, build_parser
from app.inference.features import Precision
from app.inference.results import ScaleMode, ViewMode

APP = Path(__file__).resolve().parents[2] / "app"


def _parsers(
    parser: argparse.ArgumentParser, path: str = "spp"
) -> list[tuple[str, argparse.ArgumentParser]]:
    """Every parser under ``parser`` with its command path (``spp eval``, ...)."""
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += _parsers(child, f"{path} {name}")
    return found


def test_every_option_and_argument_of_every_command_has_help() -> None:
    missing = [
        f"{path}: {action.option_strings or action.dest}"
        for path, parser in _parsers(build_parser())
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction | argparse._SubParsersAction)
        and not action.help
    ]
    assert missing == []


def test_the_walk_finds_the_nested_commands() -> None:
    paths = {path for path, _ in _parsers(build_parser())}
    assert {"spp models card", "spp data shapes", "spp import spp-net-release"} <= paths
    assert {"spp recipe fields", "spp train", "spp eval", "spp compare"} <= paths


def test_every_command_module_has_the_same_shape() -> None:
    modules = sorted(p.stem for p in (APP / "cli").glob("*.py"))
    groups = {m.__name__.rpartition(".")[2] for m in COMMAND_GROUPS}
    assert set(modules) - groups == {"__init__", "__main__", "common"}
    for module in COMMAND_GROUPS:
        assert callable(module.add_parser), module.__name__


def test_choices_come_from_the_library_literals() -> None:
    parser = build_parser()
    choices = {
        (path, action.dest): tuple(action.choices)
        for path, p in _parsers(parser)
        for action in p._actions
        if action.choices is not None and not isinstance(action, argparse._SubParsersAction)
    }
    assert choices[("spp detect", "precision")] == get_args(Precision)
    assert choices[("spp eval", "scales")] == get_args(ScaleMode)
    assert choices[("spp classify", "views")] == get_args(ViewMode)


def test_release_scales_are_written_once() -> None:
    from app.model.release import RELEASE_SCALES

    literal = ", ".join(str(s) for s in RELEASE_SCALES)
    holders = [p for p in APP.rglob("*.py") if literal in p.read_text()]
    assert [p.relative_to(APP).as_posix() for p in holders] == ["model/release/importer.py"]


def test_only_the_cli_reads_the_command_line() -> None:
    readers = [
        p.relative_to(APP).as_posix()
        for p in APP.rglob("*.py")
        if re.search(r"\bsys\.argv\b", p.read_text())
    ]
    assert readers, "the CLI itself reads it"
    assert [r for r in readers if not r.startswith("cli/")] == []


@pytest.mark.parametrize("text", ["import sys\nsys.argv[1:]\n", "x = sys.argv\n"])
def test_the_command_line_check_would_see_a_reader(text: str) -> None:
    assert re.search(r"\bsys\.argv\b", text)


def test_the_package_documents_its_shape() -> None:
    assert cli.__doc__ is not None and "add_parser" in cli.__doc__


def test_version_is_the_installed_package_s(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit):
        build_parser().parse_args(["--version"])
    assert capsys.readouterr().out.strip() == f"spp {version('spp-service')}"
