"""Painting shapes over an image in order, and annotating what stays visible of each.

Annotation rules (one definition, used everywhere):

- An object's **visible mask** is the set of image pixels where its own antialiased coverage
  (fill or outline) is >= 0.5 and no later shape's coverage is >= 0.5.
- Its **box** is the bounding box of its visible mask: 0-based inclusive pixel indices
  ``(x_min, y_min, x_max, y_max)``.
- It is **truncated** when part of its full (unoccluded) mask falls outside the image.
- It is **difficult** when less than :data:`DIFFICULT_VISIBLE_FRACTION` of its full mask is
  visible, or its box is narrower or shorter than :data:`DIFFICULT_MIN_SIDE` pixels.
- A shape with no visible pixel is not annotated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from app.data.shapes.geometry import SUBPIXEL_SHIFT, ShapeSpec, shape_polygon, to_fixed_point

DIFFICULT_VISIBLE_FRACTION = 0.4
"""An object with less than this fraction of its full mask visible is marked difficult."""

DIFFICULT_MIN_SIDE = 8
"""An object whose box is narrower or shorter than this (pixels) is marked difficult."""


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


@dataclass(frozen=True, eq=False)
class ShapeLayer:
    """A shape rendered on its own canvas covering its full (unclipped) extent.

    Attributes:
        spec: the shape and its colours.
        x0, y0: image column and row of canvas pixel (0, 0); may be negative.
        fill_alpha: np.ndarray[h, w] float32 in [0, 1], the antialiased fill coverage.
        outline_alpha: np.ndarray[h, w] float32 in [0, 1], or None without an outline.
        mask: np.ndarray[h, w] bool, coverage (fill or outline) >= 0.5.
        full_count: pixels in ``mask``, inside the image or not.
    """

    spec: ShapeSpec
    x0: int
    y0: int
    fill_alpha: np.ndarray
    outline_alpha: np.ndarray | None
    mask: np.ndarray
    full_count: int


Overlap = tuple[slice, slice, slice, slice]
"""(image rows, image columns, layer rows, layer columns) where a layer meets the image."""


def render_layer(spec: ShapeSpec) -> ShapeLayer:
    """Rasterise ``spec`` (antialiased, 1/16 pixel precision) on a canvas just large enough."""
    pts = shape_polygon(spec.label, spec.radius, spec.angle) + np.asarray(spec.center)
    pad = spec.outline_thickness + 2 if spec.outline_bgr is not None else 2
    x0 = math.floor(pts[:, 0].min()) - pad
    y0 = math.floor(pts[:, 1].min()) - pad
    w = math.ceil(pts[:, 0].max()) + pad + 1 - x0
    h = math.ceil(pts[:, 1].max()) + pad + 1 - y0
    local = [to_fixed_point(pts - (x0, y0))]
    fill = np.zeros((h, w), np.uint8)
    cv2.fillPoly(fill, local, 255, cv2.LINE_AA, SUBPIXEL_SHIFT)
    coverage = fill
    outline_alpha = None
    if spec.outline_bgr is not None and spec.outline_thickness > 0:
        outline = np.zeros((h, w), np.uint8)
        cv2.polylines(
            outline, local, True, 255, spec.outline_thickness, cv2.LINE_AA, SUBPIXEL_SHIFT
        )
        coverage = np.maximum(fill, outline)
        outline_alpha = outline.astype(np.float32) / 255.0
    mask = coverage >= 128
    return ShapeLayer(
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
        self.layers: list[ShapeLayer] = []
        self.visible: list[int] = []  # visible pixel count per layer

    def overlap(self, layer: ShapeLayer) -> Overlap | None:
        """Where ``layer`` meets the image, or None when it lies wholly outside."""
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

    def pixels_under(self, layer: ShapeLayer) -> np.ndarray:
        """The image pixels under ``layer``'s mask: np.ndarray[N, 3] uint8 BGR (N may be 0)."""
        clip = self.overlap(layer)
        if clip is None:
            return np.zeros((0, 3), np.uint8)
        rows, cols, lrows, lcols = clip
        return np.asarray(self.image[rows, cols][layer.mask[lrows, lcols]])

    def visibility_if_added(self, layer: ShapeLayer) -> tuple[float, float]:
        """Fractions visible if ``layer`` were painted next.

        Returns:
            (visible fraction of the new shape inside the image, smallest visible fraction
            any earlier shape would keep; 1.0 when there is none).
        """
        clip = self.overlap(layer)
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

    def add(self, layer: ShapeLayer) -> None:
        """Paint ``layer`` over the image and record it as the top owner of its pixels."""
        clip = self.overlap(layer)
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
            clip = self.overlap(layer)
            if clip is None or self.visible[index] == 0:
                continue
            rows, cols, lrows, lcols = clip
            ys, xs = np.nonzero(self.owner[rows, cols] == index)
            box = (
                int(xs.min()) + cols.start,
                int(ys.min()) + rows.start,
                int(xs.max()) + cols.start,
                int(ys.max()) + rows.start,
            )
            fraction = self.visible[index] / layer.full_count
            in_image = int(layer.mask[lrows, lcols].sum())
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
        compositor.add(render_layer(spec))
    return compositor.objects()
