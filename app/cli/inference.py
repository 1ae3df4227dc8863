"""``spp detect IMAGE...`` and ``spp classify IMAGE...``: a stored model on image files."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from app.cli.common import (
    SubParsers,
    fail,
    json_arg,
    load_detector,
    model_args,
    read_image,
    scales_arg,
    views_arg,
)

if TYPE_CHECKING:
    import numpy as np

    from app.inference.results import DetectionResult


def add_parser(sub: SubParsers, store: str) -> None:
    """``spp detect`` and ``spp classify``."""
    p = sub.add_parser("detect", help="detect objects in images")
    p.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...)")
    model_args(p, store)
    scales_arg(p)
    p.add_argument(
        "--min-confidence",
        type=float,
        default=0.5,
        help="drop detections whose confidence is below this (default 0.5)",
    )
    json_arg(p)
    p.add_argument(
        "--draw", metavar="OUT", help="write the image with boxes (a directory for several images)"
    )
    p.add_argument(
        "--proposals",
        metavar="FILE.json",
        help="your own windows instead of selective search (one image): a JSON array of "
        "[x1, y1, x2, y2] boxes in the image's pixel frame, 0-based, as /detect's field",
    )
    p.set_defaults(func=run_detect)

    p = sub.add_parser("classify", help="classify whole images (full-image SPP)")
    p.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...)")
    model_args(p, store)
    p.add_argument("--top-k", type=int, default=3, help="classes listed per image (default 3)")
    json_arg(p)
    views_arg(p)
    p.set_defaults(func=run_classify)


def _read_proposals(path: str | None, max_count: int, num_images: int) -> np.ndarray | None:
    """``--proposals FILE.json`` parsed (``None`` without it); exits with the reason when the
    file is unreadable or not a list of at most ``max_count`` [x1, y1, x2, y2] boxes."""
    from app.data.client_proposals import ClientProposalsError, parse_client_proposals

    if path is None:
        return None
    if num_images != 1:
        fail(f"--proposals needs exactly one image, got {num_images}")
    try:
        return parse_client_proposals(Path(path).read_bytes(), max_count)
    except (OSError, ClientProposalsError) as exc:
        fail(f"{path}: {exc}")


def _clip(boxes: np.ndarray, image: np.ndarray, path: str) -> np.ndarray:
    """``--proposals`` boxes clipped to the image; exits when one is empty after clipping."""
    from app.data.client_proposals import ClientProposalsError, clip_client_proposals

    try:
        return clip_client_proposals(boxes, width=image.shape[1], height=image.shape[0])
    except ClientProposalsError as exc:
        fail(f"{path}: {exc}")


def _print_detections(path: str, result: DetectionResult) -> None:
    sys.stdout.write(
        f"{path}: {len(result.detections)} detections, {result.num_proposals} proposals\n"
    )
    for det in result.detections:
        x1, y1, x2, y2 = det.box
        sys.stdout.write(
            f"  {det.label:<10} conf {det.confidence:.3f} score {det.score:+.3f} "
            f"box [{x1:.1f}, {y1:.1f}, {x2:.1f}, {y2:.1f}]\n"
        )


def run_detect(args: argparse.Namespace) -> int:
    """``spp detect``: print (or ``--json``) each image's detections, ``--draw`` the boxes."""
    import cv2
    from tqdm import tqdm

    from app.data.proposals import propose
    from app.inference.detector import DetectOptions
    from app.inference.draw import draw_detections

    detector = load_detector(args)
    options = DetectOptions(scales=args.scales, min_confidence=args.min_confidence)
    config = detector.model.manifest.proposals
    supplied = _read_proposals(args.proposals, config.max_proposals, len(args.images))
    draw_dir = Path(args.draw) if args.draw else None
    if draw_dir and len(args.images) > 1:
        draw_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for path in tqdm(args.images, desc="detect", disable=len(args.images) < 2 or args.json):
        image = read_image(path)
        windows = (
            propose(image, config) if supplied is None else _clip(supplied, image, args.proposals)
        )
        [result] = detector.detect([image], [windows], options)
        results[path] = result
        if draw_dir:
            target = draw_dir / f"{Path(path).stem}.jpg" if len(args.images) > 1 else draw_dir
            cv2.imwrite(str(target), draw_detections(image, result.detections)[:, :, ::-1])
        if not args.json:
            _print_detections(path, result)
    if args.json:
        payload = {path: asdict(result) for path, result in results.items()}
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    return 0


def run_classify(args: argparse.Namespace) -> int:
    """``spp classify``: the top ``--top-k`` classes of each image."""
    from tqdm import tqdm

    from app.data.proposals import propose

    detector = load_detector(args)
    out = {}
    for path in tqdm(args.images, desc="classify", disable=len(args.images) < 2 or args.json):
        image = read_image(path)
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
