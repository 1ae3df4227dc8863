"""The ``spp`` command: thin argument parsing over the library.

spp detect IMAGE... [--model NAME] [--scales single|multi] [--json] [--draw OUT]
           [--proposals FILE.json]
spp classify IMAGE... [--model NAME] [--top-k K]
spp models [--json] | spp models card NAME [--store DIR] [--check]
spp data shapes --out DIR --seed N --train N --val N --test N [--preset realistic]
spp train classify|detect|all --config FILE [--work DIR] [--out DIR]
spp eval --voc-root DIR --split test (--model NAME [--scales single|multi] | --detections FILE)
spp import spp-net-release --model-mat FILE [--conv-weights FILE] [--bbox-regressor FILE]
    --name NAME [--store DIR] [--scales 480,576,688,874,1200] [--half]
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


def _read_proposals(path: str | None, max_count: int, num_images: int) -> np.ndarray | None:
    """``--proposals FILE.json`` parsed (``None`` without it); exits with the reason when the
    file is unreadable or not a list of at most ``max_count`` [x1, y1, x2, y2] boxes."""
    from app.data.client_proposals import ClientProposalsError, parse_client_proposals

    if path is None:
        return None
    if num_images != 1:
        raise SystemExit(f"spp: --proposals needs exactly one image, got {num_images}")
    try:
        return parse_client_proposals(Path(path).read_bytes(), max_count)
    except (OSError, ClientProposalsError) as exc:
        raise SystemExit(f"spp: {path}: {exc}") from None


def _clip(boxes: np.ndarray, image: np.ndarray, args: argparse.Namespace) -> np.ndarray:
    """``--proposals`` boxes clipped to the image; exits when one is empty after clipping."""
    from app.data.client_proposals import ClientProposalsError, clip_client_proposals

    try:
        return clip_client_proposals(boxes, width=image.shape[1], height=image.shape[0])
    except ClientProposalsError as exc:
        raise SystemExit(f"spp: {args.proposals}: {exc}") from None


def cmd_detect(args: argparse.Namespace) -> int:
    import cv2
    from tqdm import tqdm

    from app.data.proposals import propose
    from app.inference.detector import DetectOptions
    from app.inference.draw import draw_detections

    detector = _load_detector(args)
    options = DetectOptions(scales=args.scales, min_confidence=args.min_confidence)
    config = detector.model.manifest.proposals
    supplied = _read_proposals(args.proposals, config.max_proposals, len(args.images))
    draw_dir = Path(args.draw) if args.draw else None
    if draw_dir and len(args.images) > 1:
        draw_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for path in tqdm(args.images, desc="detect", disable=len(args.images) < 2 or args.json):
        image = _read_image(path)
        windows = propose(image, config) if supplied is None else _clip(supplied, image, args)
        [result] = detector.detect([image], [windows], options)
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


def cmd_models_card(args: argparse.Namespace) -> int:
    """Write (or with ``--check`` compare) ``<store>/<name>/MODEL_CARD.md``."""
    from app.model.card import CARD_FILE, render_model_card
    from app.model.store import ModelLoadError, read_manifest, validate_model_name

    try:
        model_dir = Path(args.store) / validate_model_name(args.name)
        text = render_model_card(read_manifest(model_dir))
    except ModelLoadError as exc:
        raise SystemExit(f"spp: {exc}") from None
    path = model_dir / CARD_FILE
    if args.check:
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current != text:
            sys.stderr.write(
                f"spp: {path} is {'missing' if current is None else 'out of date'}; "
                f"run `spp models card {args.name} --store {args.store}`\n"
            )
            return 1
        sys.stdout.write(f"{path} is up to date\n")
        return 0
    path.write_text(text, encoding="utf-8")
    sys.stdout.write(f"wrote {path}\n")
    return 0


def cmd_data_shapes(args: argparse.Namespace) -> int:
    from app.data.shapes import PRESETS, generate_shapes_dataset

    summary = generate_shapes_dataset(
        Path(args.out),
        seed=args.seed,
        n_train=args.train,
        n_val=args.val,
        n_test=args.test,
        progress=True,
        workers=args.workers,
        knobs=PRESETS[args.preset],
    )
    sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from app.training.pipeline import Pipeline
    from app.training.recipe import TrainConfig

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
            record_as=args.record_as,
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
        record_as=args.record_as,
        limit=args.limit,
        workers=args.workers,
    )
    sys.stdout.write(json.dumps(report["summary"], indent=2) + "\n")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
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


def cmd_import_release(args: argparse.Namespace) -> int:
    """``spp import spp-net-release``: the SPP_net release's detector into the store."""
    from app.model.release import ReleaseFormatError, import_spp_net_release
    from app.model.store import ModelLoadError

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
        raise SystemExit(f"spp: {exc}") from None
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        raise SystemExit(f"spp: {where}{exc.strerror or exc}") from None
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


def add_import_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], store: str) -> None:
    """``spp import spp-net-release ...`` (docs/serving-release.md)."""
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
    p.add_argument("--store", default=store, help="model store directory")
    p.add_argument(
        "--scales",
        type=_scale_list,
        default=(480, 576, 688, 874, 1200),
        help="multi-scale set, comma-separated (default: spp_demo.m's 480,576,688,874,1200)",
    )
    p.add_argument("--half", action="store_true", help="store float16 weights (default float32)")
    p.set_defaults(func=cmd_import_release)


def default_store() -> str:
    """The model store directory: ``MODEL_STORE`` from the environment (or ``.env``), else the
    repository's ``model_store/``; the service reads the same setting (``StoreSettings``)."""
    from app.service.settings import StoreSettings

    return str(StoreSettings().model_store)


def model_args(p: argparse.ArgumentParser, store: str) -> None:
    """``--model``, ``--store``, ``--device`` and ``--precision`` of the inference commands."""
    from app.model.store import DEFAULT_MODEL_NAME

    p.add_argument("--model", default=DEFAULT_MODEL_NAME, help="model name in the store")
    p.add_argument("--store", default=store, help="model store directory")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when present)")
    precision_arg(p)


def add_detect_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], store: str) -> None:
    p = sub.add_parser("detect", help="detect objects in images")
    p.add_argument("images", nargs="+")
    model_args(p, store)
    p.add_argument("--scales", choices=("single", "multi"), default="single")
    p.add_argument("--min-confidence", type=float, default=0.5)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument(
        "--draw", metavar="OUT", help="write the image with boxes (a directory for several images)"
    )
    p.add_argument(
        "--proposals",
        metavar="FILE.json",
        help="your own windows instead of selective search (one image): a JSON array of "
        "[x1, y1, x2, y2] boxes in the image's pixel frame, 0-based, as /detect's field",
    )
    p.set_defaults(func=cmd_detect)


def add_classify_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], store: str
) -> None:
    p = sub.add_parser("classify", help="classify whole images (full-image SPP)")
    p.add_argument("images", nargs="+")
    model_args(p, store)
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--json", action="store_true")
    views_arg(p)
    p.set_defaults(func=cmd_classify)


def add_models_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], store: str) -> None:
    """``spp models [--json]`` and ``spp models card NAME [--store DIR] [--check]``."""
    p = sub.add_parser("models", help="list the models in the store, or write a model card")
    p.add_argument("--store", default=store)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)
    card = p.add_subparsers(dest="models_command").add_parser(
        "card", help="write <store>/NAME/MODEL_CARD.md from the model's manifest"
    )
    card.add_argument("name", help="model name in the store")
    # SUPPRESS: without --store here, the one given before `card` (or its default) stands.
    card.add_argument("--store", default=argparse.SUPPRESS, help="model store directory")
    card.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if the card is not current"
    )
    card.set_defaults(func=cmd_models_card)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spp", description="SPP-net detection: inference, training, evaluation."
    )
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)
    store = default_store()
    add_detect_parser(sub, store)
    add_classify_parser(sub, store)
    add_models_parser(sub, store)
    add_import_parser(sub, store)

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
    p.add_argument(
        "--preset",
        choices=("v1", "realistic"),
        default="v1",
        help="realism knobs (docs/data.md): v1, the images the shipped model trained on, or "
        "realistic (smaller, more hidden and camouflaged shapes, look-alikes, photographs "
        "kept apart between splits)",
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
    p.add_argument("--store", default=store)
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
    p.add_argument("--store", default=store)
    p.add_argument("--scales", choices=("single", "multi"), default="single")
    p.add_argument("--out", default="reports/eval", help="directory for report.json and PR plots")
    p.add_argument("--device", default=None)
    precision_arg(p)
    record_args(p)
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
    add_compare_parser(sub)
    return parser


def add_compare_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    p.add_argument("--voc-root", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_compare)


def record_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--record", action="store_true", help="write the metrics into the model's manifest"
    )
    p.add_argument(
        "--record-as",
        metavar="NAME",
        help="with --record: the metrics' key prefix instead of the split (e.g. real-test, "
        "for a second dataset whose split is also called test)",
    )


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
