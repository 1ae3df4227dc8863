"""The ``spp`` command: thin argument parsing over the library.

spp detect IMAGE... [--model NAME] [--scales single|multi] [--json] [--draw OUT]
spp classify IMAGE... [--model NAME] [--top-k K]
spp models
spp data shapes --out DIR --seed N --train N --val N --test N
spp train classify|detect|all --config FILE [--work DIR] [--out DIR]
spp eval --voc-root DIR --split test (--model NAME [--scales single|multi] | --detections FILE)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from app.inference.detector import Detector

log = logging.getLogger("spp")


def _read_image(path: str) -> np.ndarray:
    from app.imaging import ImageError, decode_image

    try:
        return decode_image(Path(path).read_bytes(), max_pixels=200_000_000)
    except (OSError, ImageError) as exc:
        raise SystemExit(f"spp: {path}: {getattr(exc, 'message', exc)}") from None


def _load_detector(args: argparse.Namespace) -> Detector:
    from app.inference.detector import Detector
    from app.model.store import ModelLoadError, load_model

    try:
        model = load_model(Path(args.store), args.model)
    except ModelLoadError as exc:
        raise SystemExit(f"spp: {exc}") from None
    return Detector(model, args.device, args.precision)


def cmd_detect(args: argparse.Namespace) -> int:
    import cv2
    from tqdm import tqdm

    from app.data.proposals import propose
    from app.inference.detector import DetectOptions
    from app.inference.draw import draw_detections

    detector = _load_detector(args)
    options = DetectOptions(scales=args.scales, min_confidence=args.min_confidence)
    config = detector.model.manifest.proposals
    draw_dir = Path(args.draw) if args.draw else None
    if draw_dir and len(args.images) > 1:
        draw_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for path in tqdm(args.images, desc="detect", disable=len(args.images) < 2 or args.json):
        image = _read_image(path)
        [result] = detector.detect([image], [propose(image, config)], options)
        results[path] = result
        if draw_dir:
            target = draw_dir / f"{Path(path).stem}.jpg" if len(args.images) > 1 else draw_dir
            drawn = draw_detections(image, result.detections)
            cv2.imwrite(str(target), drawn[:, :, ::-1])
        if not args.json:
            sys.stdout.write(
                f"{path}: {len(result.detections)} detections, {result.num_proposals} proposals\n"
            )
            for det in result.detections:
                x1, y1, x2, y2 = det.box
                sys.stdout.write(
                    f"  {det.label:<10} conf {det.confidence:.3f} score {det.score:+.3f} "
                    f"box [{x1:.1f}, {y1:.1f}, {x2:.1f}, {y2:.1f}]\n"
                )
    if args.json:
        payload = {path: asdict(result) for path, result in results.items()}
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from app.data.proposals import propose

    detector = _load_detector(args)
    out = {}
    for path in tqdm(args.images, desc="classify", disable=len(args.images) < 2 or args.json):
        image = _read_image(path)
        windows = (
            [propose(image, detector.model.manifest.proposals)] if args.views == "detect" else None
        )
        [predictions] = detector.classify(
            [image], top_k=args.top_k, views=args.views, proposals=windows
        )
        out[path] = [asdict(p) for p in predictions]
        if not args.json:
            best = ", ".join(f"{p.label} {p.probability:.3f}" for p in predictions)
            sys.stdout.write(f"{path}: {best}\n")
    if args.json:
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from app.model.store import list_models

    manifests = list_models(Path(args.store))
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


def cmd_data_shapes(args: argparse.Namespace) -> int:
    from app.data.shapes import generate_shapes_dataset

    summary = generate_shapes_dataset(
        Path(args.out),
        seed=args.seed,
        n_train=args.train,
        n_val=args.val,
        n_test=args.test,
        progress=True,
        workers=args.workers,
    )
    sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from app.training.pipeline import Pipeline, TrainConfig

    config = TrainConfig.from_yaml(Path(args.config))
    work = Path(args.work or f"work_data/{config.name}")
    pipeline = Pipeline(config, work, device=args.device or "cpu")
    if args.stage == "classify":
        pipeline.run_pretrain()
    else:
        out = Path(args.out or Path(args.store) / config.name)
        manifest = pipeline.run_detection(out)
        sys.stdout.write(f"wrote {out} (weights sha256 {manifest.weights_sha256})\n")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from app.evaluation.runner import evaluate, evaluate_classification

    if args.task == "classify":
        report = evaluate_classification(
            voc_root=Path(args.voc_root),
            split=args.split,
            store=Path(args.store),
            model_name=args.model,
            out_dir=Path(args.out),
            device=args.device,
            precision=args.precision,
            record=args.record,
            size=args.classify_size,
            views=args.views,
            workers=args.workers,
        )
        sys.stdout.write(json.dumps(report["summary"], indent=2) + "\n")
        return 0

    report = evaluate(
        voc_root=Path(args.voc_root),
        split=args.split,
        store=Path(args.store),
        model_name=args.model,
        detections_file=Path(args.detections) if args.detections else None,
        scales=args.scales,
        out_dir=Path(args.out),
        device=args.device,
        precision=args.precision,
        record=args.record,
        limit=args.limit,
        workers=args.workers,
    )
    sys.stdout.write(json.dumps(report["summary"], indent=2) + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from app.model.store import DEFAULT_MODEL_NAME, default_store_dir

    parser = argparse.ArgumentParser(
        prog="spp", description="SPP-net detection: inference, training, evaluation."
    )
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)

    def model_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", default=DEFAULT_MODEL_NAME, help="model name in the store")
        p.add_argument("--store", default=str(default_store_dir()), help="model store directory")
        p.add_argument(
            "--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when present)"
        )
        precision_arg(p)

    p = sub.add_parser("detect", help="detect objects in images")
    p.add_argument("images", nargs="+")
    model_args(p)
    p.add_argument("--scales", choices=("single", "multi"), default="single")
    p.add_argument("--min-confidence", type=float, default=0.5)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument(
        "--draw", metavar="OUT", help="write the image with boxes (a directory for several images)"
    )
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("classify", help="classify whole images (full-image SPP)")
    p.add_argument("images", nargs="+")
    model_args(p)
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--json", action="store_true")
    views_arg(p)
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("models", help="list the models in the store")
    p.add_argument("--store", default=str(default_store_dir()))
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    data = sub.add_parser("data", help="datasets").add_subparsers(dest="dataset", required=True)
    p = data.add_parser("shapes", help="generate the shapes dataset in Pascal VOC layout")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--train", type=int, default=0)
    p.add_argument("--val", type=int, default=0)
    p.add_argument("--test", type=int, default=0)
    p.add_argument(
        "--workers", type=int, default=1, help="processes (the output does not depend on it)"
    )
    p.set_defaults(func=cmd_data_shapes)

    p = sub.add_parser("train", help="train by the paper's multi-stage pipeline")
    p.add_argument(
        "stage",
        choices=("classify", "detect", "all"),
        help="classify: stage 1 only; detect/all: every stage (stage 1 resumes if done)",
    )
    p.add_argument(
        "--config", required=True, help="recipe YAML, e.g. app/training/configs/zf5-shapes.yaml"
    )
    p.add_argument("--work", help="work directory (default work_data/<name>)")
    p.add_argument("--out", help="model directory to write (default <store>/<name>)")
    p.add_argument("--store", default=str(default_store_dir()))
    p.add_argument("--device", default=None)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="VOC 2007 11-point AP of a model or of a detections file")
    p.add_argument("--voc-root", required=True)
    p.add_argument("--split", default="test")
    p.add_argument(
        "--task",
        choices=("detect", "classify"),
        default="detect",
        help="detect: VOC AP; classify: top-1 accuracy on the single-object images",
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument("--model", default=None)
    source.add_argument("--detections", help="JSON list of {image_id, label, score, box}")
    p.add_argument("--store", default=str(default_store_dir()))
    p.add_argument("--scales", choices=("single", "multi"), default="single")
    p.add_argument("--out", default="reports/eval", help="directory for report.json and PR plots")
    p.add_argument("--device", default=None)
    precision_arg(p)
    p.add_argument(
        "--record", action="store_true", help="write the metrics into the model's manifest"
    )
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
    p.set_defaults(func=cmd_eval)
    return parser


def precision_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--precision",
        choices=("float32", "bfloat16", "float16"),
        default="float32",
        help="convolutions and fc6/fc7 in this type (float16: CUDA only)",
    )


def views_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--views",
        choices=("full", "multi", "detect"),
        default="full",
        help="classification: the whole image as one view (paper's full-image SPP), the "
        "multi-view test on conv5 at six scales, or the class of the most confident detection",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "eval" and not args.model and not args.detections:
        from app.model.store import DEFAULT_MODEL_NAME

        args.model = DEFAULT_MODEL_NAME
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
