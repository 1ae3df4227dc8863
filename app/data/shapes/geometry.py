"""The six shape classes as polygons, and the description of one shape to paint.

Every shape is regular and never stretched: it is fixed by its class, its centre, its
circumscribed radius and its rotation. Coordinates are ``(x, y)`` pixels, 0-based, with pixel
centres at integers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star", "hexagon", "cross")
"""The six classes, in the order of their class ids."""

MIN_SHAPE_DIAMETER = 24.0
"""Smallest circumscribed diameter of a shape, in pixels."""

SUBPIXEL_SHIFT = 4
"""OpenCV draws with ``1 / 2**SUBPIXEL_SHIFT`` = 1/16 pixel precision."""

_SUBPIXEL_SCALE = 1 << SUBPIXEL_SHIFT
_STAR_INNER_RATIO = math.sin(math.radians(18)) / math.sin(math.radians(126))  # pentagram, 0.382
_CROSS_HALF_WIDTH_RATIO = 1.0 / 3.0  # arm half-width / arm half-length: five equal squares


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
        return _cross_polygon(radius, angle)
    else:
        raise ValueError(f"expected a label in {CLASSES}, got {label!r}")
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _cross_polygon(radius: float, angle: float) -> np.ndarray:
    """The 12 vertices (np.ndarray[12, 2] float64) of a plus sign of five equal squares."""
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


def to_fixed_point(points: np.ndarray) -> np.ndarray:
    """Pixel coordinates as OpenCV's fixed-point drawing input.

    Args:
        points: np.ndarray[V, 2] float ``(x, y)`` pixels.

    Returns:
        np.ndarray[V, 2] int32, in units of 1/16 pixel (pass ``shift=SUBPIXEL_SHIFT``).
    """
    return np.round(points * _SUBPIXEL_SCALE).astype(np.int32)
