"""The generated shapes dataset: one image at a time, then the whole dataset in VOC layout.

Each image holds 1 to ``max_shapes`` (6) shapes (:mod:`~app.data.shapes.geometry`) over a
background with clutter (:mod:`~app.data.shapes.backgrounds`). Later shapes are painted over
earlier ones (partial occlusion) and shapes may cross the image border (truncation); the
annotation rules are those of :mod:`~app.data.shapes.compositor`. The longer image side is 300
to 640 px and the JPEG quality 60 to 95. Boxes are written to the VOC XML 1-based (``+ 1``),
as the devkit does.

Determinism: image ``index`` of split ``split`` draws all its randomness from
``numpy.random.default_rng(SeedSequence([seed, split_code, index]))``, so an image does not
depend on how many images the other splits hold, and the same seed and knobs
(:class:`~app.data.shapes.knobs.GeneratorKnobs`) give byte-identical files (with the same
OpenCV build). A dataset is therefore defined by (generator version, seed, knobs); the default
knobs give the images of generator version 1 as they always were.
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
    background_with_source,
    draw_clutter,
    photo_split_names,
    random_colour,
)
from app.data.shapes.compositor import ShapeCompositor, ShapeObject, render_layer
from app.data.shapes.geometry import CLASSES, ShapeSpec
from app.data.shapes.knobs import GeneratorKnobs
from app.data.voc import VocAnnotation, format_classes, format_image_set, format_voc_xml

logger = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")
"""Split names; the position is the split code used in the per-image seed."""

GENERATOR_VERSION = 1
"""Bumped whenever the same seed and knobs would give different images."""

_GENERATOR_NAME = "app.data.shapes"  # recorded in shapes.json
_OWNED_ENTRIES = ("JPEGImages", "Annotations", "ImageSets", "classes.txt", "shapes.json")

Job = tuple[int, str, int, GeneratorKnobs]
"""(seed, split, index, knobs) of one image."""

JobResult = tuple[str, bytes, bytes, list[str], str | None]
"""(image id, JPEG bytes, VOC XML bytes, labels in paint order, background photograph or None)
of one image."""


# --------------------------------------------------------------------------------------------
# One image


@dataclass(frozen=True)
class Sample:
    """One generated image before JPEG encoding.

    Attributes:
        image_bgr: np.ndarray[H, W, 3] uint8.
        objects: annotations, in paint order.
        jpeg_quality: the quality the image is encoded with (60..95).
        background: file name of the photograph behind the shapes, or None for a procedural
            background.
    """

    image_bgr: np.ndarray
    objects: list[ShapeObject]
    jpeg_quality: int
    background: str | None = None


def _contrasting_colour(
    rng: np.random.Generator, reference: np.ndarray, min_distance: float = 90.0
) -> tuple[int, int, int]:
    """A random colour whose L1 distance to ``reference`` (np.ndarray[3], a BGR mean) is at
    least ``min_distance`` (after 20 tries, the last colour drawn)."""
    colour = random_colour(rng)
    for _ in range(20):
        if float(np.abs(np.asarray(colour, np.float32) - reference).sum()) >= min_distance:
            break
        colour = random_colour(rng)
    return colour


def _low_contrast_colour(
    rng: np.random.Generator, reference: np.ndarray, band: tuple[float, float]
) -> tuple[int, int, int]:
    """A colour whose L1 distance to ``reference`` (np.ndarray[3], a BGR mean) lies in
    ``band`` (after 20 tries, the last colour drawn).

    The distance is drawn uniformly in the band and shared among the channels by a flat
    Dirichlet draw; each channel moves up or down at random, the other way when it would leave
    0..255.
    """
    low, high = band
    ref = np.asarray(reference, np.float64)
    colour = (0, 0, 0)
    for _ in range(20):
        delta = rng.uniform(low, high) * rng.dirichlet(np.ones(3))  # [3]
        signs = np.where(rng.random(3) < 0.5, -1.0, 1.0)
        moved = ref + signs * delta
        moved = np.where((moved < 0) | (moved > 255), ref - signs * delta, moved)
        b, g, r = np.clip(np.rint(moved), 0, 255).astype(int)
        colour = (int(b), int(g), int(r))
        if low <= float(np.abs(np.asarray(colour, np.float64) - ref).sum()) <= high:
            break
    return colour


def _random_placement(
    rng: np.random.Generator,
    label: str,
    height: int,
    width: int,
    diameters: tuple[float, float],
) -> ShapeSpec:
    """A random size (log-uniform in ``diameters``, pixels), rotation, position and outline for
    ``label``; colours still black."""
    min_diameter, max_diameter = diameters
    diameter = float(np.exp(rng.uniform(math.log(min_diameter), math.log(max_diameter))))
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


def _shape_colours(
    rng: np.random.Generator, spec: ShapeSpec, under: np.ndarray, knobs: GeneratorKnobs
) -> ShapeSpec:
    """``spec`` with its fill (and outline) chosen against ``under`` (np.ndarray[N, 3] uint8,
    the pixels it will cover): contrasting, or camouflaged with probability
    ``knobs.low_contrast`` (drawn only when that is above 0)."""
    reference = under.mean(axis=0) if under.size else np.zeros(3)
    if knobs.low_contrast > 0.0 and rng.random() < knobs.low_contrast:
        fill = _low_contrast_colour(rng, reference, knobs.low_contrast_band)
        outline = (
            _low_contrast_colour(rng, reference, knobs.low_contrast_band)
            if spec.outline_bgr is not None
            else None
        )
    else:
        fill = _contrasting_colour(rng, reference, knobs.min_contrast)
        outline = random_colour(rng) if spec.outline_bgr is not None else None
    return dataclasses.replace(spec, fill_bgr=fill, outline_bgr=outline)


def place_shapes(
    rng: np.random.Generator, image: np.ndarray, knobs: GeneratorKnobs
) -> ShapeCompositor:
    """Paint 1 to ``knobs.max_shapes`` shapes over ``image`` (np.ndarray[H, W, 3] uint8, in
    place), each tried up to 15 times until it and every earlier shape keep enough of their
    area visible (``min_visible``, or ``heavy_min_visible`` for a heavily occluding one).

    Returns:
        The compositor: its ``layers`` are the painted shapes in order, ``objects()`` their
        annotations.
    """
    height, width = image.shape[:2]
    compositor = ShapeCompositor(image)
    n_shapes = int(rng.integers(1, knobs.max_shapes + 1))
    diameters = (
        knobs.min_diameter,
        max(knobs.min_diameter + 1, 0.9 * min(height, width)),
    )
    for _ in range(n_shapes):
        label = CLASSES[int(rng.integers(len(CLASSES)))]
        heavy = rng.random() < knobs.heavy_occlusion  # this one may be (or hide others) mostly
        min_fraction = knobs.heavy_min_visible if heavy else knobs.min_visible
        for _attempt in range(15):
            spec = _random_placement(rng, label, height, width, diameters)
            layer = render_layer(spec)
            own, others = compositor.visibility_if_added(layer)
            if own < min_fraction or others < min_fraction:
                continue
            spec = _shape_colours(rng, spec, compositor.pixels_under(layer), knobs)
            compositor.add(dataclasses.replace(layer, spec=spec))
            break
    return compositor


def render_sample(
    seed: int, split: str, index: int, knobs: GeneratorKnobs = GeneratorKnobs()
) -> Sample:
    """Generate image ``index`` of ``split`` for ``seed`` (a pure function of the four).

    Args:
        seed, split, index: which image.
        knobs: realism knobs; the defaults give the generator-version-1 images.

    Returns:
        The image (BGR, before JPEG), its annotations, its JPEG quality and its photograph.
    """
    if split not in SPLITS:
        raise ValueError(f"expected a split in {SPLITS}, got {split!r}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, SPLITS.index(split), index]))
    long_side = int(rng.integers(300, 641))
    short_side = round(long_side * rng.uniform(0.6, 1.0))
    height, width = (short_side, long_side) if rng.random() < 0.6 else (long_side, short_side)
    photo_split = split if knobs.background_split else None
    image, background = background_with_source(rng, height, width, photo_split)
    draw_clutter(rng, image, knobs.lookalikes)
    objects = place_shapes(rng, image, knobs).objects()
    if rng.random() < 0.25:
        image = cv2.GaussianBlur(image, (0, 0), float(rng.uniform(0.5, 1.2)))
    if rng.random() < 0.4:
        noise = rng.standard_normal(image.shape, dtype=np.float32) * rng.uniform(2, 8)
        image = np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    return Sample(image, objects, int(rng.integers(60, 96)), background)


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
    seed, split, index, knobs = job
    sample = render_sample(seed, split, index, knobs)
    image_id = image_id_for(split, index)
    height, width = sample.image_bgr.shape[:2]
    jpeg = encode_jpeg(sample.image_bgr, sample.jpeg_quality)
    xml = voc_xml(image_id, width, height, sample.objects)
    return image_id, jpeg, xml, [o.label for o in sample.objects], sample.background


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


def _background_split_summary(photos_used: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Per split: the photographs it may use and how many of its images each one is behind."""
    return {
        split: {"photos": photo_split_names(split), "images_per_photo": photos_used[split]}
        for split in SPLITS
    }


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
    knobs: GeneratorKnobs = GeneratorKnobs(),
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
        knobs: realism knobs (part of what defines the dataset, with the seed and the
            generator version); the defaults give the generator-version-1 images.

    Returns:
        Summary: seed, generator version, knobs, counts of images and objects per split and
        class, background photographs available (and, with ``knobs.background_split``, each
        split's photographs and how many images each one is behind), and ``sha256``: the hash
        over every written data file (sorted relative paths and contents; ``shapes.json``
        itself excluded).
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
    jobs = [(seed, split, i, knobs) for split in SPLITS for i in range(counts[split])]
    ids: dict[str, list[str]] = {split: [] for split in SPLITS}
    objects: dict[str, dict[str, int]] = {s: dict.fromkeys(CLASSES, 0) for s in SPLITS}
    photos_used: dict[str, dict[str, int]] = {split: {} for split in SPLITS}
    logger.info("generating %d shapes images into %s (seed %d)", len(jobs), out, seed)
    for (_, split, _, _), (image_id, jpeg, xml, labels, photo) in zip(
        jobs, _run_jobs(jobs, workers, progress), strict=True
    ):
        writer.write(f"JPEGImages/{image_id}.jpg", jpeg)
        writer.write(f"Annotations/{image_id}.xml", xml)
        ids[split].append(image_id)
        for label in labels:
            objects[split][label] += 1
        if photo is not None:
            photos_used[split][photo] = photos_used[split].get(photo, 0) + 1
    for split in SPLITS:
        writer.write(f"ImageSets/Main/{split}.txt", format_image_set(ids[split]))
    writer.write("ImageSets/Main/trainval.txt", format_image_set(ids["train"] + ids["val"]))
    writer.write("classes.txt", format_classes(CLASSES))
    summary: dict[str, Any] = {
        "generator": _GENERATOR_NAME,
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "knobs": knobs.model_dump(mode="json"),
        "classes": list(CLASSES),
        "images": counts,
        "objects": objects,
        "backgrounds": background_sources(),
        "opencv": cv2.__version__,
        "sha256": writer.digest(),
    }
    if knobs.background_split:
        summary["background_split"] = _background_split_summary(photos_used)
    (out / "shapes.json").write_text(json.dumps(summary, indent=2) + "\n")
    logger.info("wrote %d images, data sha256 %s", len(jobs), summary["sha256"])
    return summary
