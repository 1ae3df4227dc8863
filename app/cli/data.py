"""``spp data shapes``: the generated shapes dataset in Pascal VOC layout (docs/data.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from app.cli.common import SubParsers


def add_parser(sub: SubParsers, store: str) -> None:
    """``spp data shapes --out DIR --seed N [--train N --val N --test N] [--preset NAME]``."""
    del store  # no model involved
    data = sub.add_parser("data", help="datasets").add_subparsers(dest="dataset", required=True)
    p = data.add_parser("shapes", help="generate the shapes dataset in Pascal VOC layout")
    p.add_argument("--out", required=True, help="dataset root to write (a new directory)")
    p.add_argument(
        "--seed", type=int, required=True, help="the same seed gives byte-identical files"
    )
    p.add_argument("--train", type=int, default=0, help="images of the train split (default 0)")
    p.add_argument(
        "--val", type=int, default=0, help="images of the val split, which calibrates (default 0)"
    )
    p.add_argument(
        "--test", type=int, default=0, help="images of the test split, for `spp eval` (default 0)"
    )
    p.add_argument(
        "--workers", type=int, default=1, help="processes (the output does not depend on it)"
    )
    p.add_argument(
        "--preset",
        choices=("v1", "realistic"),
        default="v1",
        help="realism knobs (docs/data.md): v1, the images the shipped model trained on, or "
        "realistic (smaller, more hidden and camouflaged shapes, look-alikes, photographs "
        "kept apart between splits)",
    )
    p.set_defaults(func=run_shapes, extra="train")


def run_shapes(args: argparse.Namespace) -> int:
    """Generate the dataset and print a short summary (the whole one is ``shapes.json``)."""
    # The background photographs ship with these two; without them the images would differ.
    import skimage.data  # noqa: F401
    import sklearn.datasets  # noqa: F401

    from app.data.shapes import PRESETS, generate_shapes_dataset

    out = Path(args.out)
    summary = generate_shapes_dataset(
        out,
        seed=args.seed,
        n_train=args.train,
        n_val=args.val,
        n_test=args.test,
        progress=True,
        workers=args.workers,
        knobs=PRESETS[args.preset],
    )
    sys.stdout.write(shapes_summary(out, summary) + "\n")
    return 0


def shapes_summary(out: Path, summary: dict[str, Any]) -> str:
    """A few lines on a generated dataset: images and objects per split, where the rest is."""
    lines = [f"wrote {out} (seed {summary['seed']}, data sha256 {summary['sha256']})"]
    for split, n in summary["images"].items():
        if n:
            objects = sum(summary["objects"][split].values())
            lines.append(f"  {split}: {n} images, {objects} objects")
    lines.append(f"classes: {', '.join(summary['classes'])}; details in {out / 'shapes.json'}")
    return "\n".join(lines)
