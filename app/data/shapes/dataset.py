"""The generated shapes dataset: one image at a time, then the whole dataset in VOC layout.

Each image holds 1 to 6 shapes (:mod:`~app.data.shapes.geometry`) over a background with
clutter (:mod:`~app.data.shapes.backgrounds`). Later shapes are painted over earlier ones
(partial occlusion) and shapes may cross the image border (truncation); the annotation rules
are those of :mod:`~app.data.shapes.compositor`. The longer image side is 300 to 640 px and the
JPEG quality 60 to 95. Boxes are written to the VOC XML 1-based (``+ 1``), as the devkit does.

Determinism: image ``index`` of split ``split`` draws all its randomness from
``numpy.random.default_rng(SeedSequence([seed, split_code, index]))``, so an image does not
depend on how many images the other splits hold, and the same seed gives byte-identical files
(with the same OpenCV build).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from app.data.shapes.backgrounds import (
    background_sources,
    draw_clutter,
    random_background,
    random_colour,
)
from app.data.shapes.compositor import ShapeCompositor, ShapeObject, render_layer
from app.data.shapes.geometry import CLASSES, MIN_SHAPE_DIAMETER, ShapeSpec
from app.data.voc import VocAnnotation, format_classes, format_image_set, format_voc_xml

logger = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")
"""Split names; the position is the split code used in the per-image seed."""

GENERATOR_VERSION = 1
"""Bumped whenever the same seed would give different images."""

_GENERATOR_NAME = "app.data.shapes"  # recorded in shapes.json
_OWNED_ENTRIES = ("JPEGImages", "Annotations", "ImageSets", "classes.txt", "shapes.json")

Job = tuple[int, str, int]
"""(seed, split, index) of one image."""

JobResult = tuple[str, bytes, bytes, list[str]]
"""(image id, JPEG bytes, VOC XML bytes, labels in paint order) of one image."""


# --------------------------------------------------------------------------------------------
# One image


@dataclass(frozen=True)
class Sample:
    """One generated image before JPEG encoding.

    Attributes:
        image_bgr: np.ndarray[H, W, 3] uint8.
        objects: annotations, in paint order.
        jpeg_quality: the quality the image is encoded with (60..95).
    """

    image_bgr: np.ndarray
    objects: list[ShapeObject]
    jpeg_quality: int


def _contrasting_colour(rng: np.random.Generator, reference: np.ndarray) -> tuple[int, int, int]:
    """A random colour whose L1 distance to ``reference`` (BGR mean) is at least 90."""
    colour = random_colour(rng)
    for _ in range(20):
        if float(np.abs(np.asarray(colour, np.float32) - reference).sum()) >= 90.0:
            break
        colour = random_colour(rng)
    return colour


def _random_placement(
    rng: np.random.Generator, label: str, height: int, width: int, max_diameter: float
) -> ShapeSpec:
    """A random size, rotation, position and outline for ``label``; colours still black."""
    diameter = float(np.exp(rng.uniform(math.log(MIN_SHAPE_DIAMETER), math.log(max_diameter))))
    radius = diameter / 2.0
    angle = float(rng.uniform(0, 2 * math.pi))
    if rng.random() < 0.25:  # may cross the border
        cx, cy = rng.uniform(
            (-0.3 * radius, -0.3 * radius), (width + 0.3 * radius, height + 0.3 * radius)
        )
    else:
        cx = rng.uniform(radius, max(radius, width - radius))
        cy = rng.uniform(radius, max(radius, height - radius))
    outlined = rng.random() < 0.5
    thickness = int(rng.integers(1, max(2, min(5, int(diameter / 16)) + 1)))
    return ShapeSpec(
        label,
        (float(cx), float(cy)),
        radius,
        angle,
        (0, 0, 0),
        (0, 0, 0) if outlined else None,
        thickness if outlined else 0,
    )


def _place_shapes(rng: np.random.Generator, image: np.ndarray) -> list[ShapeObject]:
    """Paint 1 to 6 shapes over ``image`` (in place), each tried up to 15 times until it and
    every earlier shape keep enough of their area visible; returns their annotations."""
    height, width = image.shape[:2]
    compositor = ShapeCompositor(image)
    n_shapes = int(rng.integers(1, 7))
    max_diameter = max(MIN_SHAPE_DIAMETER + 1, 0.9 * min(height, width))
    for _ in range(n_shapes):
        label = CLASSES[int(rng.integers(len(CLASSES)))]
        heavy = rng.random() < 0.15  # this one may be (or hide others) mostly
        min_fraction = 0.12 if heavy else 0.6
        for _attempt in range(15):
            spec = _random_placement(rng, label, height, width, max_diameter)
            layer = render_layer(spec)
            own, others = compositor.visibility_if_added(layer)
            if own < min_fraction or others < min_fraction:
                continue
            under = compositor.pixels_under(layer)
            reference = under.mean(axis=0) if under.size else np.zeros(3)
            fill = _contrasting_colour(rng, reference)
            outline = random_colour(rng) if spec.outline_bgr is not None else None
            spec = dataclasses.replace(spec, fill_bgr=fill, outline_bgr=outline)
            compositor.add(dataclasses.replace(layer, spec=spec))
            break
    return compositor.objects()


def render_sample(seed: int, split: str, index: int) -> Sample:
    """Generate image ``index`` of ``split`` for ``seed`` (a pure function of the three).

    Returns:
        The image (BGR, before JPEG), its annotations and its JPEG quality.
    """
    if split not in SPLITS:
        raise ValueError(f"expected a split in {SPLITS}, got {split!r}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, SPLITS.index(split), index]))
    long_side = int(rng.integers(300, 641))
    short_side = round(long_side * rng.uniform(0.6, 1.0))
    height, width = (short_side, long_side) if rng.random() < 0.6 else (long_side, short_side)
    image = random_background(rng, height, width)
    draw_clutter(rng, image)
    objects = _place_shapes(rng, image)
    if rng.random() < 0.25:
        image = cv2.GaussianBlur(image, (0, 0), float(rng.uniform(0.5, 1.2)))
    if rng.random() < 0.4:
        noise = rng.standard_normal(image.shape, dtype=np.float32) * rng.uniform(2, 8)
        image = np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    return Sample(image, objects, int(rng.integers(60, 96)))


def encode_jpeg(image_bgr: np.ndarray, quality: int) -> bytes:
    """Baseline, non-optimised JPEG with fixed parameters (deterministic for one OpenCV build)."""
    params = [
        cv2.IMWRITE_JPEG_QUALITY,
        quality,
        cv2.IMWRITE_JPEG_OPTIMIZE,
        0,
        cv2.IMWRITE_JPEG_PROGRESSIVE,
        0,
    ]
    ok, buf = cv2.imencode(".jpg", image_bgr, params)
    if not ok:  # pragma: no cover - OpenCV always encodes a valid uint8 image
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def voc_xml(image_id: str, width: int, height: int, objects: Sequence[ShapeObject]) -> bytes:
    """The Pascal VOC annotation of one image; boxes are written 1-based (devkit convention)."""
    annotation = VocAnnotation(
        image_id=image_id,
        width=width,
        height=height,
        boxes=np.asarray([o.box for o in objects], np.float32).reshape(-1, 4),
        labels=[o.label for o in objects],
        difficult=np.asarray([o.difficult for o in objects], bool),
        truncated=np.asarray([o.truncated for o in objects], bool),
    )
    return format_voc_xml(annotation, folder="shapes", database="SPP generated shapes")


def image_id_for(split: str, index: int) -> str:
    """The image id of image ``index`` of ``split``, e.g. ``train_000042``."""
    return f"{split}_{index:06d}"


def _generate_one(job: Job) -> JobResult:
    seed, split, index = job
    sample = render_sample(seed, split, index)
    image_id = image_id_for(split, index)
    height, width = sample.image_bgr.shape[:2]
    jpeg = encode_jpeg(sample.image_bgr, sample.jpeg_quality)
    xml = voc_xml(image_id, width, height, sample.objects)
    return image_id, jpeg, xml, [o.label for o in sample.objects]


def _run_jobs(jobs: list[Job], workers: int, progress: bool) -> Iterator[JobResult]:
    """Results of ``_generate_one`` in job order, optionally in a process pool."""
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc="shapes", unit="img", disable=not progress)
    try:
        if workers == 1 or len(jobs) < 2:
            for job in jobs:
                yield _generate_one(job)
                bar.update()
        else:
            workers = min(workers, os.cpu_count() or 1, len(jobs))
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for result in pool.map(_generate_one, jobs, chunksize=8):
                    yield result
                    bar.update()
    finally:
        bar.close()


# --------------------------------------------------------------------------------------------
# The dataset


class _HashingWriter:
    """Writes files under ``root`` and remembers the sha256 of each one."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.hashes: dict[str, str] = {}  # relative path -> hex digest

    def write(self, relative: str, data: bytes) -> None:
        (self.root / relative).write_bytes(data)
        self.hashes[relative] = hashlib.sha256(data).hexdigest()

    def digest(self) -> str:
        """One sha256 over the sorted relative paths and the digests of their contents."""
        total = hashlib.sha256()
        for relative in sorted(self.hashes):
            total.update(f"{relative}\0{self.hashes[relative]}\n".encode())
        return total.hexdigest()


def _prepare_root(out: Path, overwrite: bool) -> None:
    """Create the VOC folders under ``out``, first removing a dataset written there before
    (only with ``overwrite``; otherwise that is a FileExistsError)."""
    existing = [name for name in _OWNED_ENTRIES if (out / name).exists()]
    if existing:
        if not overwrite:
            raise FileExistsError(
                f"{out} already holds a dataset ({', '.join(existing)}); "
                "pass overwrite=True to replace it"
            )
        for name in existing:
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    (out / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (out / "Annotations").mkdir(parents=True, exist_ok=True)
    (out / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)


def generate_shapes_dataset(
    out: Path,
    *,
    seed: int,
    n_train: int,
    n_val: int,
    n_test: int,
    progress: bool = True,
    workers: int = 1,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write the shapes dataset in Pascal VOC layout under ``out``.

    Layout: ``JPEGImages/<id>.jpg``, ``Annotations/<id>.xml``,
    ``ImageSets/Main/{train,val,trainval,test}.txt``, ``classes.txt`` (one class per line, in
    class-id order) and ``shapes.json`` (the returned summary). Ids are ``<split>_<index:06d>``.

    Args:
        out: dataset root (created if missing).
        seed: base seed; the same seed gives byte-identical files.
        n_train, n_val, n_test: number of images per split (>= 0).
        progress: show a tqdm progress bar.
        workers: worker processes (1 = in this process); the output does not depend on it.
        overwrite: replace a dataset already written in ``out``; otherwise that is an error.

    Returns:
        Summary: seed, generator version, counts of images and objects per split and class,
        background photographs used, and ``sha256``: the hash over every written data file
        (sorted relative paths and contents; ``shapes.json`` itself excluded).
    """
    counts = {"train": n_train, "val": n_val, "test": n_test}
    for split, n in counts.items():
        if n < 0:
            raise ValueError(f"expected n_{split} >= 0, got {n}")
    if workers < 1:
        raise ValueError(f"expected workers >= 1, got {workers}")
    out = Path(out)
    _prepare_root(out, overwrite)
    writer = _HashingWriter(out)
    jobs = [(seed, split, i) for split in SPLITS for i in range(counts[split])]
    ids: dict[str, list[str]] = {split: [] for split in SPLITS}
    objects: dict[str, dict[str, int]] = {s: dict.fromkeys(CLASSES, 0) for s in SPLITS}
    logger.info("generating %d shapes images into %s (seed %d)", len(jobs), out, seed)
    for (_, split, _), (image_id, jpeg, xml, labels) in zip(
        jobs, _run_jobs(jobs, workers, progress), strict=True
    ):
        writer.write(f"JPEGImages/{image_id}.jpg", jpeg)
        writer.write(f"Annotations/{image_id}.xml", xml)
        ids[split].append(image_id)
        for label in labels:
            objects[split][label] += 1
    for split in SPLITS:
        writer.write(f"ImageSets/Main/{split}.txt", format_image_set(ids[split]))
    writer.write("ImageSets/Main/trainval.txt", format_image_set(ids["train"] + ids["val"]))
    writer.write("classes.txt", format_classes(CLASSES))
    summary: dict[str, Any] = {
        "generator": _GENERATOR_NAME,
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "classes": list(CLASSES),
        "images": counts,
        "objects": objects,
        "backgrounds": background_sources(),
        "opencv": cv2.__version__,
        "sha256": writer.digest(),
    }
    (out / "shapes.json").write_text(json.dumps(summary, indent=2) + "\n")
    logger.info("wrote %d images, data sha256 %s", len(jobs), summary["sha256"])
    return summary
