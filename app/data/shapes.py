"""A generated object-detection dataset of regular shapes, written in Pascal VOC layout.

Six classes, in this order: :data:`CLASSES` = circle, square, triangle, star (five-pointed,
pentagram proportions), hexagon, cross (a plus sign made of five equal squares). Every shape is
regular and never stretched; it has any rotation, any fill colour, and an optional outline.

Each image holds 1 to 6 shapes on a background that is either a crop of a real photograph that
ships inside an installed package (scikit-image's and scikit-learn's sample images) or a
procedural texture (smooth noise, gradients, stripes), sometimes both blended, plus clutter that
is not one of the classes (irregular polygons, lines, text, clearly elongated ellipses). Later
shapes are painted over earlier ones (partial occlusion) and shapes may cross the image border
(truncation). The longer image side is 300 to 640 px and the JPEG quality 60 to 95.

Annotation rules (one definition, used everywhere):

- An object's **visible mask** is the set of image pixels where its own antialiased coverage
  (fill or outline) is >= 0.5 and no later shape's coverage is >= 0.5.
- Its **box** is the bounding box of its visible mask: 0-based inclusive pixel indices
  ``(x_min, y_min, x_max, y_max)``; the VOC XML stores them 1-based (``+ 1``), as the devkit does.
- It is **truncated** when part of its full (unoccluded) mask falls outside the image.
- It is **difficult** when less than :data:`DIFFICULT_VISIBLE_FRACTION` of its full mask is
  visible, or its box is narrower or shorter than :data:`DIFFICULT_MIN_SIDE` pixels.
- A shape with no visible pixel is not annotated (placement avoids that case).

Determinism: image ``index`` of split ``split`` draws all its randomness from
``numpy.random.default_rng(SeedSequence([seed, split_code, index]))``, so an image does not
depend on how many images the other splits hold, and the same seed gives byte-identical files
(with the same OpenCV build).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

logger = logging.getLogger(__name__)

CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star", "hexagon", "cross")
"""The six classes, in the order of their class ids."""

SPLITS: tuple[str, ...] = ("train", "val", "test")
"""Split names; the position is the split code used in the per-image seed."""

DIFFICULT_VISIBLE_FRACTION = 0.4
"""An object with less than this fraction of its full mask visible is marked difficult."""

DIFFICULT_MIN_SIDE = 8
"""An object whose box is narrower or shorter than this (pixels) is marked difficult."""

MIN_SHAPE_DIAMETER = 24.0
"""Smallest circumscribed diameter of a shape, in pixels."""

GENERATOR_VERSION = 1
"""Bumped whenever the same seed would give different images."""

_STAR_INNER_RATIO = math.sin(math.radians(18)) / math.sin(math.radians(126))  # pentagram, 0.382
_CROSS_HALF_WIDTH_RATIO = 1.0 / 3.0  # arm half-width / arm half-length: five equal squares
_SUBPIXEL_SHIFT = 4  # OpenCV drawing with 1/16 pixel precision
_SUBPIXEL_SCALE = 1 << _SUBPIXEL_SHIFT

# Photographs bundled in scikit-image's wheel (no download) and scikit-learn's sample images.
# Images dominated by regular shapes (coins, chessboard, the retina disc, star fields) are left
# out so the background does not teach the wrong class.
_SKIMAGE_PHOTOS: tuple[str, ...] = (
    "astronaut.png",
    "coffee.png",
    "chelsea.png",
    "rocket.jpg",
    "camera.png",
    "brick.png",
    "grass.png",
    "gravel.png",
    "moon.png",
    "motorcycle_left.png",
    "ihc.png",
    "page.png",
    "text.png",
)
_SKLEARN_PHOTOS: tuple[str, ...] = ("china.jpg", "flower.jpg")

# Text clutter avoids glyphs that look like a class (o, 0, O, Q: circles; x, X, +: crosses).
_TEXT_ALPHABET = "ABCEFGHJKLMNPRSTUVWYZabcdefghjkmnprstuvwyz123456789-=#%&"
_FONTS: tuple[int, ...] = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_PLAIN,
    cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
)


# --------------------------------------------------------------------------------------------
# Shapes


@dataclass(frozen=True)
class ShapeSpec:
    """One shape to paint.

    Attributes:
        label: one of :data:`CLASSES`.
        center: ``(x, y)`` in pixels (0-based, pixel centres at integers); may lie outside.
        radius: circumscribed radius in pixels (the shape fits a circle of this radius).
        angle: rotation in radians.
        fill_bgr: fill colour, BGR 0..255.
        outline_bgr: outline colour, BGR 0..255, or None for no outline.
        outline_thickness: outline thickness in pixels (ignored without an outline).
    """

    label: str
    center: tuple[float, float]
    radius: float
    angle: float
    fill_bgr: tuple[int, int, int]
    outline_bgr: tuple[int, int, int] | None = None
    outline_thickness: int = 0


@dataclass(frozen=True)
class ShapeObject:
    """The annotation of one painted shape (see the module docstring for the rules).

    Attributes:
        label: class name.
        box: ``(x_min, y_min, x_max, y_max)`` 0-based inclusive pixel indices of the visible mask.
        truncated: part of the shape lies outside the image.
        difficult: mostly hidden or tiny.
        visible_fraction: visible pixels / pixels of the full unoccluded, unclipped mask.
    """

    label: str
    box: tuple[int, int, int, int]
    truncated: bool
    difficult: bool
    visible_fraction: float


def shape_polygon(label: str, radius: float, angle: float) -> np.ndarray:
    """Vertices of a regular shape centred on the origin.

    Args:
        label: one of :data:`CLASSES`.
        radius: circumscribed radius in pixels.
        angle: rotation in radians (counter-clockwise in the usual x-right, y-up sense; with
            image y pointing down it turns clockwise, which does not matter for random angles).

    Returns:
        np.ndarray[V, 2] float64 ``(x, y)`` vertices in order; a circle is a fine polygon.
    """
    if label == "circle":
        n = int(np.clip(2.0 * math.pi * radius / 3.0, 24, 180))
        t = angle + np.arange(n) * (2.0 * math.pi / n)
        r = np.full(n, radius)
    elif label in ("square", "triangle", "hexagon"):
        n = {"square": 4, "triangle": 3, "hexagon": 6}[label]
        t = angle + np.arange(n) * (2.0 * math.pi / n)
        r = np.full(n, radius)
    elif label == "star":
        t = angle + np.arange(10) * (math.pi / 5.0)
        r = np.where(np.arange(10) % 2 == 0, radius, radius * _STAR_INNER_RATIO)
    elif label == "cross":
        half_len = radius / math.hypot(1.0, _CROSS_HALF_WIDTH_RATIO)
        h = half_len * _CROSS_HALF_WIDTH_RATIO
        arm = np.array([[h, half_len], [h, h], [half_len, h]])  # one quarter of the outline
        quarter_turn = np.array([[0.0, -1.0], [1.0, 0.0]])  # row vectors: (x, y) -> (y, -x)
        pts = [arm]
        for _ in range(3):
            pts.append(pts[-1] @ quarter_turn)
        xy = np.concatenate(pts)
        c, s = math.cos(angle), math.sin(angle)
        return np.asarray(xy @ np.array([[c, s], [-s, c]]), dtype=np.float64)
    else:
        raise ValueError(f"expected a label in {CLASSES}, got {label!r}")
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


@dataclass
class _Layer:
    """A shape rendered on its own canvas covering its full (unclipped) extent."""

    spec: ShapeSpec
    x0: int  # image column of canvas column 0
    y0: int
    fill_alpha: np.ndarray  # [h, w] float32 in [0, 1]
    outline_alpha: np.ndarray | None  # [h, w] float32 or None
    mask: np.ndarray  # [h, w] bool: coverage >= 0.5
    full_count: int


def _render_layer(spec: ShapeSpec) -> _Layer:
    pts = shape_polygon(spec.label, spec.radius, spec.angle) + np.asarray(spec.center)
    pad = spec.outline_thickness + 2 if spec.outline_bgr is not None else 2
    x0 = math.floor(pts[:, 0].min()) - pad
    y0 = math.floor(pts[:, 1].min()) - pad
    w = math.ceil(pts[:, 0].max()) + pad + 1 - x0
    h = math.ceil(pts[:, 1].max()) + pad + 1 - y0
    local = [np.round((pts - (x0, y0)) * _SUBPIXEL_SCALE).astype(np.int32)]
    fill = np.zeros((h, w), np.uint8)
    cv2.fillPoly(fill, local, 255, cv2.LINE_AA, _SUBPIXEL_SHIFT)
    coverage = fill
    outline_alpha = None
    if spec.outline_bgr is not None and spec.outline_thickness > 0:
        outline = np.zeros((h, w), np.uint8)
        cv2.polylines(
            outline, local, True, 255, spec.outline_thickness, cv2.LINE_AA, _SUBPIXEL_SHIFT
        )
        coverage = np.maximum(fill, outline)
        outline_alpha = outline.astype(np.float32) / 255.0
    mask = coverage >= 128
    return _Layer(
        spec, x0, y0, fill.astype(np.float32) / 255.0, outline_alpha, mask, int(mask.sum())
    )


class ShapeCompositor:
    """Paints shapes over an image in order while tracking which shape owns each pixel.

    Args:
        image_bgr: np.ndarray[H, W, 3] uint8, painted in place.
    """

    def __init__(self, image_bgr: np.ndarray) -> None:
        if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
            raise ValueError(
                f"expected a uint8 image [H, W, 3], got {image_bgr.dtype} {tuple(image_bgr.shape)}"
            )
        self.image = image_bgr
        self.owner: np.ndarray = np.full(image_bgr.shape[:2], -1, np.int16)  # [H, W] top shape
        self.layers: list[_Layer] = []
        self.visible: list[int] = []  # visible pixel count per layer

    def _clip(self, layer: _Layer) -> tuple[slice, slice, slice, slice] | None:
        """(image rows, image cols, layer rows, layer cols) of the overlap, or None."""
        height, width = int(self.owner.shape[0]), int(self.owner.shape[1])
        h, w = int(layer.mask.shape[0]), int(layer.mask.shape[1])
        ix0, iy0 = max(layer.x0, 0), max(layer.y0, 0)
        ix1, iy1 = min(layer.x0 + w, width), min(layer.y0 + h, height)
        if ix1 <= ix0 or iy1 <= iy0:
            return None
        return (
            slice(iy0, iy1),
            slice(ix0, ix1),
            slice(iy0 - layer.y0, iy1 - layer.y0),
            slice(ix0 - layer.x0, ix1 - layer.x0),
        )

    def visibility_if_added(self, layer: _Layer) -> tuple[float, float]:
        """Fractions visible if ``layer`` were painted next.

        Returns:
            (visible fraction of the new shape inside the image, smallest visible fraction
            any earlier shape would keep; 1.0 when there is none).
        """
        clip = self._clip(layer)
        if clip is None or layer.full_count == 0:
            return 0.0, 1.0
        rows, cols, lrows, lcols = clip
        mask_in = layer.mask[lrows, lcols]
        own = float(mask_in.sum()) / layer.full_count
        covered = self.owner[rows, cols][mask_in]
        covered = covered[covered >= 0]
        worst = 1.0
        if covered.size and self.layers:
            lost = np.bincount(covered, minlength=len(self.layers))
            for k, other in enumerate(self.layers):
                if lost[k]:
                    worst = min(worst, (self.visible[k] - int(lost[k])) / other.full_count)
        return own, worst

    def add(self, layer: _Layer) -> None:
        """Paint ``layer`` over the image and record it as the top owner of its pixels."""
        clip = self._clip(layer)
        index = len(self.layers)
        self.layers.append(layer)
        self.visible.append(0)
        if clip is None:
            return
        rows, cols, lrows, lcols = clip
        roi = self.image[rows, cols].astype(np.float32)  # [h, w, 3]
        spec = layer.spec
        alpha = layer.fill_alpha[lrows, lcols][..., None]
        roi = roi * (1.0 - alpha) + np.asarray(spec.fill_bgr, np.float32) * alpha
        if layer.outline_alpha is not None and spec.outline_bgr is not None:
            alpha = layer.outline_alpha[lrows, lcols][..., None]
            roi = roi * (1.0 - alpha) + np.asarray(spec.outline_bgr, np.float32) * alpha
        self.image[rows, cols] = np.clip(np.rint(roi), 0, 255).astype(np.uint8)
        mask_in = layer.mask[lrows, lcols]
        owner = self.owner[rows, cols]
        covered = owner[mask_in]
        covered = covered[covered >= 0]
        if covered.size:
            lost = np.bincount(covered, minlength=index)
            for k in np.nonzero(lost)[0]:
                self.visible[k] -= int(lost[k])
        owner[mask_in] = index
        self.visible[index] = int(mask_in.sum())

    def objects(self) -> list[ShapeObject]:
        """Annotations of the painted shapes that still have a visible pixel, in paint order."""
        out = []
        for index, layer in enumerate(self.layers):
            clip = self._clip(layer)
            if clip is None or self.visible[index] == 0:
                continue
            rows, cols, _, _ = clip
            ys, xs = np.nonzero(self.owner[rows, cols] == index)
            box = (
                int(xs.min()) + cols.start,
                int(ys.min()) + rows.start,
                int(xs.max()) + cols.start,
                int(ys.max()) + rows.start,
            )
            fraction = self.visible[index] / layer.full_count
            in_image = int(layer.mask[clip[2], clip[3]].sum())
            small = min(box[2] - box[0] + 1, box[3] - box[1] + 1) < DIFFICULT_MIN_SIDE
            out.append(
                ShapeObject(
                    label=layer.spec.label,
                    box=box,
                    truncated=in_image < layer.full_count,
                    difficult=fraction < DIFFICULT_VISIBLE_FRACTION or small,
                    visible_fraction=fraction,
                )
            )
        return out


def draw_shapes(image_bgr: np.ndarray, specs: Sequence[ShapeSpec]) -> list[ShapeObject]:
    """Paint ``specs`` in order over ``image_bgr`` (in place) and annotate them.

    Args:
        image_bgr: np.ndarray[H, W, 3] uint8.
        specs: shapes, later ones painted over earlier ones.

    Returns:
        One :class:`ShapeObject` per shape that has a visible pixel, in paint order.
    """
    compositor = ShapeCompositor(image_bgr)
    for spec in specs:
        compositor.add(_render_layer(spec))
    return compositor.objects()


# --------------------------------------------------------------------------------------------
# Backgrounds and clutter


def _photo_paths() -> list[Path]:
    paths: list[Path] = []
    try:
        import skimage.data

        root = Path(skimage.data.__file__).parent
        paths += [root / name for name in _SKIMAGE_PHOTOS]
    except ImportError:  # pragma: no cover - scikit-image is a dependency
        pass
    try:
        import sklearn.datasets

        root = Path(sklearn.datasets.__file__).parent / "images"
        paths += [root / name for name in _SKLEARN_PHOTOS]
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        pass
    return [p for p in paths if p.is_file()]


@lru_cache(maxsize=1)
def _photos() -> tuple[np.ndarray, ...]:
    """The background photographs as BGR uint8 arrays (loaded once per process)."""
    from PIL import Image  # decodes these PNGs without libpng's iCCP warnings on stderr

    images = []
    for path in _photo_paths():
        with Image.open(path) as photo:
            rgb = np.asarray(photo.convert("RGB"))
        if min(rgb.shape[:2]) >= 64:
            images.append(np.ascontiguousarray(rgb[:, :, ::-1]))  # RGB -> BGR
    if not images:
        logger.warning("no background photographs found; using procedural backgrounds only")
    return tuple(images)


def background_sources() -> list[str]:
    """Names of the photographs available as backgrounds (recorded in the dataset summary)."""
    return [p.name for p in _photo_paths()]


def _random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    b, g, r = rng.integers(0, 256, size=3)
    return int(b), int(g), int(r)


def _photo_crop(rng: np.random.Generator, height: int, width: int) -> np.ndarray | None:
    photos = _photos()
    if not photos:
        return None
    photo = photos[int(rng.integers(len(photos)))]
    ph, pw = photo.shape[:2]
    aspect = width / height
    crop_h = ph * rng.uniform(0.35, 1.0)
    crop_w = crop_h * aspect
    if crop_w > pw:
        crop_w = pw * rng.uniform(0.6, 1.0)
        crop_h = crop_w / aspect
    crop_h, crop_w = max(16, min(ph, round(crop_h))), max(16, min(pw, round(crop_w)))
    top = int(rng.integers(0, ph - crop_h + 1))
    left = int(rng.integers(0, pw - crop_w + 1))
    crop = photo[top : top + crop_h, left : left + crop_w]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    out = cv2.resize(np.ascontiguousarray(crop), (width, height), interpolation=cv2.INTER_LINEAR)
    gains = rng.uniform(0.75, 1.25, size=3).astype(np.float32)
    return np.clip(out.astype(np.float32) * gains, 0, 255).astype(np.uint8)


def _procedural(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    kind = int(rng.integers(4))
    c1 = np.asarray(_random_colour(rng), np.float32)
    c2 = np.asarray(_random_colour(rng), np.float32)
    if kind == 0:  # smooth colour noise
        cells = int(rng.integers(3, 24))
        small = rng.uniform(0, 255, size=(cells, cells, 3)).astype(np.float32)
        out = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    elif kind in (1, 2):  # linear gradient (1) or stripes (2) along a random direction
        theta = rng.uniform(0, math.pi)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        t = xs * math.cos(theta) + ys * math.sin(theta)
        if kind == 1:
            t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
        else:
            period = rng.uniform(8, 80)
            t = 0.5 + 0.5 * np.sin(t * (2 * math.pi / period))
            if rng.random() < 0.5:
                t = (t > 0.5).astype(np.float32)
        out = c1 * (1 - t[..., None]) + c2 * t[..., None]
    else:  # flat colour
        out = np.broadcast_to(c1, (height, width, 3)).copy()
    sigma = rng.uniform(0, 20)
    out = out + rng.standard_normal((height, width, 3), dtype=np.float32) * sigma
    return np.clip(out, 0, 255).astype(np.uint8)


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    choice = rng.random()
    photo = _photo_crop(rng, height, width) if choice < 0.7 else None
    if photo is None:
        return _procedural(rng, height, width)
    if choice < 0.55:
        return photo
    texture = _procedural(rng, height, width)
    w = rng.uniform(0.25, 0.6)
    return cv2.addWeighted(photo, 1.0 - w, texture, w, 0.0)


def _irregular_polygon(rng: np.random.Generator, center: np.ndarray, size: float) -> np.ndarray:
    """A polygon that is clearly not regular: its longest side is >= 1.6 x its shortest."""
    for _ in range(20):
        n = int(rng.integers(3, 9))
        t = np.sort(rng.uniform(0, 2 * math.pi, n))
        r = size * rng.uniform(0.3, 1.0, n)
        pts = center + np.stack([r * np.cos(t), r * np.sin(t)], axis=1)
        sides = np.linalg.norm(pts - np.roll(pts, 1, axis=0), axis=1)
        if sides.max() >= 1.6 * max(sides.min(), 1e-6):
            return pts
    return pts


def _draw_clutter(rng: np.random.Generator, image: np.ndarray) -> None:
    """Paint 0 to 8 distractors (not any class) over the background, in place."""
    height, width = image.shape[:2]
    for _ in range(int(rng.integers(0, 9))):
        kind = int(rng.integers(4))
        colour = _random_colour(rng)
        center = rng.uniform((0, 0), (width, height))
        size = float(np.exp(rng.uniform(math.log(10), math.log(0.4 * min(height, width)))))
        thickness = int(rng.integers(1, 5))
        if kind == 0:
            pts = _irregular_polygon(rng, center, size)
            pts_i = [np.round(pts * _SUBPIXEL_SCALE).astype(np.int32)]
            if rng.random() < 0.6:
                cv2.fillPoly(image, pts_i, colour, cv2.LINE_AA, _SUBPIXEL_SHIFT)
            else:
                cv2.polylines(image, pts_i, True, colour, thickness, cv2.LINE_AA, _SUBPIXEL_SHIFT)
        elif kind == 1:
            n = int(rng.integers(2, 5))
            pts = center + rng.uniform(-size, size, size=(n, 2))
            pts_i = [np.round(pts * _SUBPIXEL_SCALE).astype(np.int32)]
            cv2.polylines(image, pts_i, False, colour, thickness, cv2.LINE_AA, _SUBPIXEL_SHIFT)
        elif kind == 2:
            n_chars = int(rng.integers(2, 10))
            text = "".join(rng.choice(list(_TEXT_ALPHABET), size=n_chars))
            font = _FONTS[int(rng.integers(len(_FONTS)))]
            scale = float(rng.uniform(0.4, 1.8))
            origin = (int(center[0]) - int(size), int(center[1]))
            cv2.putText(
                image, text, origin, font, scale, colour, max(1, thickness - 1), cv2.LINE_AA
            )
        else:
            axes = (max(2, round(size)), max(1, round(size / rng.uniform(2.5, 6.0))))
            angle = float(rng.uniform(0, 180))
            c = (round(center[0]), round(center[1]))
            fill = -1 if rng.random() < 0.6 else thickness
            cv2.ellipse(image, c, axes, angle, 0, 360, colour, fill, cv2.LINE_AA)


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
    colour = _random_colour(rng)
    for _ in range(20):
        if float(np.abs(np.asarray(colour, np.float32) - reference).sum()) >= 90.0:
            break
        colour = _random_colour(rng)
    return colour


def _place_shapes(rng: np.random.Generator, image: np.ndarray) -> list[ShapeObject]:
    height, width = image.shape[:2]
    compositor = ShapeCompositor(image)
    n_shapes = int(rng.integers(1, 7))
    max_diameter = max(MIN_SHAPE_DIAMETER + 1, 0.9 * min(height, width))
    for _ in range(n_shapes):
        label = CLASSES[int(rng.integers(len(CLASSES)))]
        heavy = rng.random() < 0.15  # this one may be (or hide others) mostly
        min_fraction = 0.12 if heavy else 0.6
        for _attempt in range(15):
            diameter = float(
                np.exp(rng.uniform(math.log(MIN_SHAPE_DIAMETER), math.log(max_diameter)))
            )
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
            spec = ShapeSpec(
                label,
                (float(cx), float(cy)),
                radius,
                angle,
                (0, 0, 0),
                (0, 0, 0) if outlined else None,
                thickness if outlined else 0,
            )
            layer = _render_layer(spec)
            own, others = compositor.visibility_if_added(layer)
            if own < min_fraction or others < min_fraction:
                continue
            clip = compositor._clip(layer)
            assert clip is not None
            under = image[clip[0], clip[1]][layer.mask[clip[2], clip[3]]]
            reference = under.mean(axis=0) if under.size else np.zeros(3)
            fill = _contrasting_colour(rng, reference)
            outline = _random_colour(rng) if outlined else None
            layer.spec = ShapeSpec(
                label, spec.center, radius, angle, fill, outline, spec.outline_thickness
            )
            compositor.add(layer)
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
    image = _background(rng, height, width)
    _draw_clutter(rng, image)
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
    lines = [
        "<annotation>",
        "  <folder>shapes</folder>",
        f"  <filename>{image_id}.jpg</filename>",
        "  <source>",
        "    <database>SPP generated shapes</database>",
        "  </source>",
        "  <size>",
        f"    <width>{width}</width>",
        f"    <height>{height}</height>",
        "    <depth>3</depth>",
        "  </size>",
        "  <segmented>0</segmented>",
    ]
    for obj in objects:
        x1, y1, x2, y2 = (v + 1 for v in obj.box)  # 0-based inclusive -> VOC 1-based
        lines += [
            "  <object>",
            f"    <name>{obj.label}</name>",
            "    <pose>Unspecified</pose>",
            f"    <truncated>{int(obj.truncated)}</truncated>",
            f"    <difficult>{int(obj.difficult)}</difficult>",
            "    <bndbox>",
            f"      <xmin>{x1}</xmin>",
            f"      <ymin>{y1}</ymin>",
            f"      <xmax>{x2}</xmax>",
            f"      <ymax>{y2}</ymax>",
            "    </bndbox>",
            "  </object>",
        ]
    lines.append("</annotation>")
    return ("\n".join(lines) + "\n").encode("utf-8")


def image_id_for(split: str, index: int) -> str:
    """The image id of image ``index`` of ``split``, e.g. ``train_000042``."""
    return f"{split}_{index:06d}"


def _generate_one(job: tuple[int, str, int]) -> tuple[str, bytes, bytes, list[str]]:
    seed, split, index = job
    sample = render_sample(seed, split, index)
    image_id = image_id_for(split, index)
    height, width = sample.image_bgr.shape[:2]
    jpeg = encode_jpeg(sample.image_bgr, sample.jpeg_quality)
    xml = voc_xml(image_id, width, height, sample.objects)
    return image_id, jpeg, xml, [o.label for o in sample.objects]


# --------------------------------------------------------------------------------------------
# The dataset


_OWNED_ENTRIES = ("JPEGImages", "Annotations", "ImageSets", "classes.txt", "shapes.json")


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

    file_hashes: dict[str, str] = {}

    def write(relative: str, data: bytes) -> None:
        (out / relative).write_bytes(data)
        file_hashes[relative] = hashlib.sha256(data).hexdigest()

    jobs = [(seed, split, i) for split in SPLITS for i in range(counts[split])]
    ids: dict[str, list[str]] = {split: [] for split in SPLITS}
    objects: dict[str, dict[str, int]] = {s: dict.fromkeys(CLASSES, 0) for s in SPLITS}
    logger.info("generating %d shapes images into %s (seed %d)", len(jobs), out, seed)
    for (_, split, _), (image_id, jpeg, xml, labels) in zip(
        jobs, _run_jobs(jobs, workers, progress), strict=True
    ):
        write(f"JPEGImages/{image_id}.jpg", jpeg)
        write(f"Annotations/{image_id}.xml", xml)
        ids[split].append(image_id)
        for label in labels:
            objects[split][label] += 1
    for split in SPLITS:
        write(f"ImageSets/Main/{split}.txt", "".join(f"{i}\n" for i in ids[split]).encode())
    write(
        "ImageSets/Main/trainval.txt", "".join(f"{i}\n" for i in ids["train"] + ids["val"]).encode()
    )
    write("classes.txt", "".join(f"{c}\n" for c in CLASSES).encode())

    total = hashlib.sha256()
    for relative in sorted(file_hashes):
        total.update(f"{relative}\0{file_hashes[relative]}\n".encode())
    summary: dict[str, Any] = {
        "generator": "app.data.shapes",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "classes": list(CLASSES),
        "images": counts,
        "objects": objects,
        "backgrounds": background_sources(),
        "opencv": cv2.__version__,
        "sha256": total.hexdigest(),
    }
    (out / "shapes.json").write_text(json.dumps(summary, indent=2) + "\n")
    logger.info("wrote %d images, data sha256 %s", len(jobs), summary["sha256"])
    return summary


def _run_jobs(
    jobs: list[tuple[int, str, int]], workers: int, progress: bool
) -> Iterator[tuple[str, bytes, bytes, list[str]]]:
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
