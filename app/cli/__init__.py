"""The ``spp`` command: thin argument parsing over the library, one module per command group.

spp detect IMAGE... [--model NAME] [--scales single|multi] [--json] [--draw OUT]
           [--proposals FILE.json]
spp classify IMAGE... [--model NAME] [--top-k K]
spp models [--json] | spp models card NAME [--store DIR] [--check]
spp data shapes --out DIR --seed N --train N --val N --test N [--preset realistic]
spp train classify|detect|all --config FILE [--work DIR] [--out DIR]
spp recipe fields [--write FILE | --check FILE]
spp eval --voc-root DIR --split test (--model NAME [--scales single|multi] | --detections FILE)
spp compare A.json B.json --voc-root DIR --split test
spp import spp-net-release --model-mat FILE [--conv-weights FILE] [--bbox-regressor FILE]
    --name NAME [--store DIR] [--scales 480,576,688,874,1200] [--half]

Every module ``app.cli.<group>`` has ``add_parser(subparsers, store)``, which adds its commands
with a ``func`` (the handler, ``run_*(args) -> exit status``) and, when the command needs an
optional dependency group, an ``extra`` (``train`` or ``import``). Handlers import the library
inside, so ``spp --help``, ``spp models`` and ``spp detect`` need only the serving dependencies;
this is the only package that reads the process's command line.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from app.cli import data, evaluate, inference, models, recipe, release_import, train
from app.cli.common import default_store, fail, package_version, recorded_command

#: Modules that only an optional dependency group installs (pyproject's extras).
OPTIONAL_MODULES = frozenset({"sklearn", "skimage", "matplotlib", "h5py", "scipy"})
#: The command groups, in ``spp --help`` order.
COMMAND_GROUPS = (inference, models, data, train, recipe, evaluate, release_import)


def build_parser() -> argparse.ArgumentParser:
    """The whole ``spp`` parser (``--store`` defaults read from the environment now)."""
    parser = argparse.ArgumentParser(
        prog="spp", description="SPP-net detection: inference, training, evaluation."
    )
    parser.add_argument(
        "--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)"
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"spp {package_version()}",
        help="the installed spp-service version (pyproject.toml's)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    store = default_store()
    for group in COMMAND_GROUPS:
        group.add_parser(sub, store)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``spp`` with ``argv`` (default: the process's arguments); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.command_argv = argv
    args.command_line = recorded_command(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        status: int = args.func(args)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        extra = getattr(args, "extra", None)
        if missing not in OPTIONAL_MODULES or extra is None:
            raise
        fail(
            f"`spp {args.command}` needs {missing}, which this installation lacks: "
            f"pip install 'spp-service[{extra}]'"
        )
    return status
