"""``spp eval`` (VOC AP, or top-1 accuracy, of a model or a detections file on one split) and
``spp compare A B`` (a paired bootstrap of two detectors)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app.cli.common import (
    SubParsers,
    device_arg,
    fail,
    precision_arg,
    scales_arg,
    store_arg,
    views_arg,
)


def add_parser(sub: SubParsers, store: str) -> None:
    """``spp eval`` and ``spp compare``."""
    _add_eval(sub, store)
    _add_compare(sub)


def _voc_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--voc-root", required=True, help="root of a VOC-layout dataset")
    p.add_argument(
        "--split", default="test", help="image set to score, ImageSets/Main/SPLIT.txt (test)"
    )


def _add_eval(sub: SubParsers, store: str) -> None:
    from app.model.store import DEFAULT_MODEL_NAME

    p = sub.add_parser("eval", help="VOC 2007 11-point AP of a model or of a detections file")
    _voc_args(p)
    p.add_argument(
        "--task",
        choices=("detect", "classify"),
        default="detect",
        help="detect: VOC AP; classify: top-1 accuracy on the single-object images",
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--model", default=None, help=f"model name in the store (default {DEFAULT_MODEL_NAME})"
    )
    source.add_argument("--detections", help="JSON list of {image_id, label, score, box}")
    store_arg(p, store)
    scales_arg(p)
    p.add_argument("--out", default="reports/eval", help="directory for report.json and PR plots")
    p.add_argument(
        "--cache",
        default=None,
        help="selective-search cache directory (default: OUT/cache; the dataset is only read)",
    )
    device_arg(p)
    precision_arg(p)
    _record_args(p)
    p.add_argument("--limit", type=int, default=None, help="only the first N images")
    p.add_argument("--workers", type=int, default=2, help="selective-search processes")
    p.add_argument(
        "--classify-size",
        type=int,
        default=None,
        help="with --task classify: the shorter side images are resized to (default: the "
        "model's classify_size)",
    )
    views_arg(p)
    p.set_defaults(func=run_eval, extra="train")


def _record_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--record", action="store_true", help="write the metrics into the model's manifest"
    )
    p.add_argument(
        "--record-as",
        metavar="NAME",
        help="with --record: the metrics' key prefix instead of the split (e.g. real-test, "
        "for a second dataset whose split is also called test)",
    )


def _add_compare(sub: SubParsers) -> None:
    """``spp compare A B``: two detectors on one split, by a paired bootstrap over images."""
    p = sub.add_parser(
        "compare",
        help="mAP difference B - A on one split with its bootstrap spread (is B better "
        "beyond noise?)",
    )
    p.add_argument(
        "a", help="detections JSON of A (`spp eval --out DIR` writes DIR/detections.json)"
    )
    p.add_argument("b", help="detections JSON of B, on the same images")
    _voc_args(p)
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the resampling (0)")
    p.set_defaults(func=run_compare, extra="train")


def run_eval(args: argparse.Namespace) -> int:
    """Score the model (or detections file) and print the summary; one line on a missing
    model, dataset or split."""
    from app.cli.common import load_stored_model
    from app.data.voc import VocFormatError
    from app.evaluation.runner import evaluate, evaluate_classification
    from app.model.store import DEFAULT_MODEL_NAME

    if args.detections is None:
        args.model = args.model or DEFAULT_MODEL_NAME
        load_stored_model(args.store, args.model)  # exits with what to do when it cannot load
    common = {
        "voc_root": Path(args.voc_root),
        "split": args.split,
        "store": Path(args.store),
        "model_name": args.model,
        "out_dir": Path(args.out),
        "proposals_cache": Path(args.cache) if args.cache else None,
        "device": args.device,
        "precision": args.precision,
        "record": args.record,
        "record_as": args.record_as,
        "workers": args.workers,
        "command": args.command_line,
    }
    try:
        if args.task == "classify":
            if args.detections is not None:
                fail("--task classify needs a model (--model), not --detections")
            report = evaluate_classification(**common, size=args.classify_size, views=args.views)
        else:
            detections = Path(args.detections) if args.detections else None
            report = evaluate(
                **common, detections_file=detections, scales=args.scales, limit=args.limit
            )
    except VocFormatError as exc:
        fail(str(exc))
    except FileNotFoundError as exc:
        fail(f"{exc.filename or exc}: no such file or directory")
    sys.stdout.write(json.dumps(report["summary"], indent=2) + "\n")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    """``spp compare``: is B better than A beyond noise (paired bootstrap over images)?"""
    from app.data.voc import VocDataset
    from app.evaluation.bootstrap import paired_bootstrap
    from app.evaluation.voc_ap import load_detections_json

    dataset = VocDataset(Path(args.voc_root), args.split)
    comparison = paired_bootstrap(
        load_detections_json(Path(args.a)),
        load_detections_json(Path(args.b)),
        dataset.annotations(),
        dataset.classes,
        resamples=args.resamples,
        seed=args.seed,
    )
    sys.stdout.write(json.dumps(comparison.to_dict(), indent=2) + "\n")
    return 0
