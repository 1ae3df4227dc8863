"""``spp recipe fields``: the table of every recipe field, generated from the schema."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.cli.common import SubParsers, fail, write_or_check


def add_parser(sub: SubParsers, store: str) -> None:
    """``spp recipe fields [--write FILE | --check FILE]``."""
    del store  # no model involved
    recipe = sub.add_parser("recipe", help="training recipes").add_subparsers(
        dest="recipe_command", required=True
    )
    p = recipe.add_parser(
        "fields", help="every recipe field with its default and the shipped recipes' values"
    )
    target = p.add_mutually_exclusive_group()
    target.add_argument(
        "--write", metavar="FILE", help="replace the table between the markers in FILE"
    )
    target.add_argument(
        "--check", metavar="FILE", help="write nothing; exit 1 when FILE's table is stale"
    )
    p.set_defaults(func=run_fields)


def run_fields(args: argparse.Namespace) -> int:
    """Print the table, or write it into (``--write``) or compare it with (``--check``) FILE."""
    from app.training.recipe_table import current_table, with_table

    table = current_table()
    path = Path(args.write or args.check or "-")
    if path == Path("-"):
        sys.stdout.write(table + "\n")
        return 0
    try:
        text = path.read_text(encoding="utf-8")
        updated = with_table(text, table)
    except (OSError, ValueError) as exc:
        fail(f"{path}: {exc}")
    fix = f"spp recipe fields --write {path}"
    return write_or_check(path, updated, check=bool(args.check), fix=fix)
