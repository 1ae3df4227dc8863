"""``spp models [--json]`` (the store's models by folder name) and ``spp models card NAME``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app.cli.common import SubParsers, fail, json_arg, store_arg, write_or_check


def add_parser(sub: SubParsers, store: str) -> None:
    """``spp models [--json]`` and ``spp models card NAME [--store DIR] [--check]``."""
    p = sub.add_parser("models", help="list the models in the store, or write a model card")
    store_arg(p, store)
    json_arg(p)
    p.set_defaults(func=run_models)
    card = p.add_subparsers(dest="models_command").add_parser(
        "card", help="write <store>/NAME/MODEL_CARD.md from the model's manifest"
    )
    card.add_argument("name", help="model name: its folder in the store")
    # SUPPRESS: without --store here, the one given before `card` (or its default) stands.
    card.add_argument(
        "--store", default=argparse.SUPPRESS, help="model store directory (default: as `models`)"
    )
    card.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if the card is not current"
    )
    card.set_defaults(func=run_card)


def run_models(args: argparse.Namespace) -> int:
    """``spp models``: one line (or JSON object) per model, by the folder name that
    ``--model`` and ``MODEL_NAME`` take."""
    from app.model.store import list_model_names, read_manifest

    store = Path(args.store)
    names = list_model_names(store)
    manifests = [read_manifest(store / name) for name in names]
    _warn_about_misnamed(store, names)
    if args.json:
        sys.stdout.write(json.dumps([m.summary() for m in manifests], indent=2) + "\n")
        return 0
    for m in manifests:
        metrics = ", ".join(f"{k}={v}" for k, v in m.metrics.items() if isinstance(v, int | float))
        sys.stdout.write(
            f"{m.name} {m.version}: {len(m.classes)} classes, "
            f"width {m.model.width}, fc {m.model.fc_dim}"
            f"{'; ' + metrics if metrics else ''}\n"
        )
    return 0


def _warn_about_misnamed(store: Path, listed: list[str]) -> None:
    """One stderr line per folder whose manifest names another model (it cannot be loaded)."""
    from app.model.store import MANIFEST_FILE, ModelLoadError, read_manifest

    for child in sorted(store.iterdir()) if store.is_dir() else []:
        if child.name in listed or not (child / MANIFEST_FILE).is_file():
            continue
        try:
            named = read_manifest(child).name
        except ModelLoadError:
            continue
        sys.stderr.write(
            f"spp: {child}: skipped, its manifest names the model {named!r}: rename the folder "
            f"to {named!r} or set the manifest's name to {child.name!r}\n"
        )


def run_card(args: argparse.Namespace) -> int:
    """Write (or with ``--check`` compare) ``<store>/<name>/MODEL_CARD.md``."""
    from app.model.card import CARD_FILE, render_model_card
    from app.model.store import ModelLoadError, read_manifest, validate_model_name

    try:
        model_dir = Path(args.store) / validate_model_name(args.name)
        text = render_model_card(read_manifest(model_dir))
    except ModelLoadError as exc:
        fail(str(exc))
    fix = f"spp models card {args.name} --store {args.store}"
    return write_or_check(model_dir / CARD_FILE, text, check=args.check, fix=fix)
