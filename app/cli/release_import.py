"""``spp import spp-net-release``: the SPP_net release's detector into the store
(docs/serving-release.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.cli.common import SubParsers, fail, store_arg


def _scale_list(text: str) -> tuple[int, ...]:
    try:
        scales = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not scales or any(s < 32 for s in scales):
        raise argparse.ArgumentTypeError(f"expected scales of at least 32 pixels, got {text!r}")
    return scales


def add_parser(sub: SubParsers, store: str) -> None:
    """``spp import spp-net-release --model-mat FILE ... --name NAME``."""
    kinds = sub.add_parser("import", help="import a model from another format").add_subparsers(
        dest="source", required=True
    )
    p = kinds.add_parser(
        "spp-net-release",
        help="the SPP_net release's VOC 2007 detector (Caffe + MATLAB files)",
    )
    p.add_argument("--model-mat", required=True, help="data/spp_model/VOC2007/spp_model.mat")
    p.add_argument(
        "--conv-weights",
        default=None,
        help="the Caffe trunk (default: data/cnn_model/Zeiler_conv5/Zeiler_conv5 of the same "
        "data package)",
    )
    p.add_argument("--bbox-regressor", default=None, help="bbox_regressor_final.mat (optional)")
    p.add_argument("--name", required=True, help="model name in the store (a new directory)")
    store_arg(p, store)
    p.add_argument(
        "--scales",
        type=_scale_list,
        default=None,
        help="multi-scale set, comma-separated (default: spp_demo.m's, RELEASE_SCALES of "
        "app/model/release/importer.py)",
    )
    p.add_argument("--half", action="store_true", help="store float16 weights (default float32)")
    p.set_defaults(func=run_import, extra="import")


def run_import(args: argparse.Namespace) -> int:
    """Import the release's files as ``<store>/<name>``."""
    from app.model.release import RELEASE_SCALES, ReleaseFormatError, import_spp_net_release
    from app.model.store import ModelLoadError

    args.scales = args.scales or RELEASE_SCALES
    try:
        manifest = import_spp_net_release(
            args.model_mat,
            name=args.name,
            store=args.store,
            conv_weights=args.conv_weights,
            bbox_regressor=args.bbox_regressor,
            scales=args.scales,
            dtype="float16" if args.half else "float32",
            command=_import_command(args),
        )
    except (ReleaseFormatError, ModelLoadError) as exc:
        fail(str(exc))
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        fail(f"{where}{exc.strerror or exc}")
    sys.stdout.write(
        f"wrote {Path(args.store) / manifest.name} ({len(manifest.classes)} classes, "
        f"{manifest.weights_dtype}, weights sha256 {manifest.weights_sha256}); "
        f"serve it with MODEL_NAME={manifest.name}\n"
    )
    return 0


def _import_command(args: argparse.Namespace) -> str:
    """The import command line as provenance (options in a fixed order)."""
    parts = ["spp import spp-net-release", f"--model-mat {args.model_mat}"]
    if args.conv_weights:
        parts.append(f"--conv-weights {args.conv_weights}")
    if args.bbox_regressor:
        parts.append(f"--bbox-regressor {args.bbox_regressor}")
    parts += [f"--name {args.name}", f"--scales {','.join(str(s) for s in args.scales)}"]
    return " ".join(parts + (["--half"] if args.half else []))
