"""Look-alike distractors: polygons that resemble a class without being one.

Each is clearly outside the six classes (:data:`~app.data.shapes.geometry.CLASSES`): regular
polygons with 5, 7 or 8 sides (no class has those), rectangles at least 1.5 times longer than
wide (a square's sides are equal), rhombi whose diagonals differ by at least 1.5 times (a
square's are equal), stars with 4 or 6 points (the class star has 5), and T and L shapes (the
class cross is a symmetric plus). They are painted as clutter and never annotated.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from app.data.shapes.geometry import SUBPIXEL_SHIFT, to_fixed_point

LOOKALIKE_KINDS: tuple[str, ...] = (
    "pentagon",
    "heptagon",
    "octagon",
    "rectangle",
    "rhombus",
    "star4",
    "star6",
    "tee",
    "ell",
)
"""The kinds of look-alike, drawn uniformly."""

LOOKALIKE_MIN_DIAMETER = 28.0
"""Smallest circumscribed diameter of a look-alike, pixels (an octagon much smaller than this
is hard to tell from a circle even for a person)."""

_REGULAR_SIDES = {"pentagon": 5, "heptagon": 7, "octagon": 8}
_STAR_POINTS = {"star4": 4, "star6": 6}


def _rotate(xy: np.ndarray, angle: float) -> np.ndarray:
    """``xy`` (np.ndarray[V, 2]) turned by ``angle`` radians about the origin."""
    c, s = math.cos(angle), math.sin(angle)
    return np.asarray(xy @ np.array([[c, s], [-s, c]]), dtype=np.float64)


def _star(points: int, radius: float, inner_ratio: float) -> np.ndarray:
    """A star with ``points`` tips on a circle of ``radius``, inner vertices at ``inner_ratio``."""
    t = np.arange(2 * points) * (math.pi / points)
    r = np.where(np.arange(2 * points) % 2 == 0, radius, radius * inner_ratio)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _tee_or_ell(kind: str, radius: float, bar: float) -> np.ndarray:
    """A T or an L made of bars ``bar`` x the arm length thick, scaled into ``radius``."""
    if kind == "tee":  # a top bar 2 wide, a stem 2 long below it, bar thick
        xy = [(-1, 1), (1, 1), (1, 1 - bar), (bar / 2, 1 - bar), (bar / 2, -1), (-bar / 2, -1)]
        xy += [(-bar / 2, 1 - bar), (-1, 1 - bar)]
    else:  # an L: a vertical bar 2 long and a foot 1.4 long, bar thick
        xy = [(-0.7, 1), (-0.7 + bar, 1), (-0.7 + bar, -1 + bar), (0.7, -1 + bar), (0.7, -1)]
        xy += [(-0.7, -1)]
    pts = np.asarray(xy, np.float64)
    return pts * (radius / np.linalg.norm(pts, axis=1).max())


def lookalike_polygon(kind: str, radius: float, angle: float, shape: float) -> np.ndarray:
    """Vertices of one look-alike centred near the origin.

    Args:
        kind: one of :data:`LOOKALIKE_KINDS`.
        radius: circumscribed radius in pixels (the farthest vertex from the origin).
        angle: rotation in radians.
        shape: in [0, 1], the kind's free proportion: aspect 1.5..3 of a rectangle or of a
            rhombus's diagonals, inner radius of a star, bar thickness of a T or L; ignored by
            the regular polygons.

    Returns:
        np.ndarray[V, 2] float64 ``(x, y)`` vertices in order.
    """
    if kind in _REGULAR_SIDES:
        n = _REGULAR_SIDES[kind]
        t = np.arange(n) * (2.0 * math.pi / n)
        xy = np.stack([radius * np.cos(t), radius * np.sin(t)], axis=1)
    elif kind in ("rectangle", "rhombus"):
        aspect = 1.5 + 1.5 * shape
        a = radius / math.hypot(1.0, 1.0 / aspect)  # half-length
        b = a / aspect  # half-width
        if kind == "rectangle":
            xy = np.array([[a, b], [-a, b], [-a, -b], [a, -b]])
        else:
            xy = np.array([[radius, 0.0], [0.0, radius / aspect], [-radius, 0.0]])
            xy = np.concatenate([xy, [[0.0, -radius / aspect]]])
    elif kind in _STAR_POINTS:
        xy = _star(_STAR_POINTS[kind], radius, 0.3 + 0.25 * shape)
    elif kind in ("tee", "ell"):
        xy = _tee_or_ell(kind, radius, 0.45 + 0.35 * shape)
    else:
        raise ValueError(f"expected a kind in {LOOKALIKE_KINDS}, got {kind!r}")
    return _rotate(xy, angle)


def draw_lookalike(
    rng: np.random.Generator,
    image: np.ndarray,
    colour: tuple[int, int, int],
    outline: tuple[int, int, int] | None,
) -> str:
    """Paint one random look-alike over ``image`` (np.ndarray[H, W, 3] uint8) in place.

    Its diameter is log-uniform in [:data:`LOOKALIKE_MIN_DIAMETER`, max(that, 0.6 x the short
    side)], its centre anywhere in the image; it is filled with ``colour`` and outlined with
    ``outline`` (2 to 4 px) unless None.

    Returns:
        Its kind, one of :data:`LOOKALIKE_KINDS`.
    """
    height, width = image.shape[:2]
    kind = LOOKALIKE_KINDS[int(rng.integers(len(LOOKALIKE_KINDS)))]
    high = max(LOOKALIKE_MIN_DIAMETER, 0.6 * min(height, width))
    radius = float(np.exp(rng.uniform(math.log(LOOKALIKE_MIN_DIAMETER), math.log(high)))) / 2
    angle = float(rng.uniform(0, 2 * math.pi))
    shape = float(rng.random())
    center = rng.uniform((0, 0), (width, height))
    pts = [to_fixed_point(lookalike_polygon(kind, radius, angle, shape) + center)]
    cv2.fillPoly(image, pts, colour, cv2.LINE_AA, SUBPIXEL_SHIFT)
    if outline is not None:
        thickness = int(rng.integers(2, 5))
        cv2.polylines(image, pts, True, outline, thickness, cv2.LINE_AA, SUBPIXEL_SHIFT)
    return kind
