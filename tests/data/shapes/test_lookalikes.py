"""Look-alike distractors: each kind is clearly none of the classes, sized and drawn as said,
and never reaches the annotations."""

from __future__ import annotations

import numpy as np
import pytest

from app.data.shapes import CLASSES, GeneratorKnobs
from app.data.shapes.backgrounds import draw_clutter, random_background
from app.data.shapes.dataset import place_shapes
from app.data.shapes.lookalikes import (
    LOOKALIKE_KINDS,
    draw_lookalike,
    lookalike_polygon,
)


def _sides(pts: np.ndarray) -> np.ndarray:
    return np.asarray(np.linalg.norm(pts - np.roll(pts, 1, axis=0), axis=1))


def _interior_angles_deg(pts: np.ndarray) -> np.ndarray:
    a, b = np.roll(pts, 1, axis=0) - pts, np.roll(pts, -1, axis=0) - pts
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return np.asarray(np.degrees(np.arccos(np.clip(cos, -1, 1))))


@pytest.mark.parametrize("kind", LOOKALIKE_KINDS)
@pytest.mark.parametrize("shape", [0.0, 0.5, 1.0])
def test_lookalikes_fit_their_radius(kind: str, shape: float) -> None:
    pts = lookalike_polygon(kind, 40.0, 0.3, shape)
    assert pts.ndim == 2 and pts.shape[1] == 2
    assert np.linalg.norm(pts, axis=1).max() == pytest.approx(40.0)


@pytest.mark.parametrize("shape", [0.0, 0.5, 1.0])
def test_each_kind_is_none_of_the_classes(shape: float) -> None:
    poly = {kind: lookalike_polygon(kind, 40.0, 0.0, shape) for kind in LOOKALIKE_KINDS}
    for kind, sides in (("pentagon", 5), ("heptagon", 7), ("octagon", 8)):
        assert len(poly[kind]) == sides  # regular, but no class has 5, 7 or 8 sides
        np.testing.assert_allclose(_sides(poly[kind]), _sides(poly[kind])[0])
    rect = _sides(poly["rectangle"])
    assert len(rect) == 4 and rect.max() >= 1.5 * rect.min() - 1e-9  # not a square
    np.testing.assert_allclose(_interior_angles_deg(poly["rectangle"]), 90.0)
    rhombus = poly["rhombus"]
    diagonals = (np.linalg.norm(rhombus[0] - rhombus[2]), np.linalg.norm(rhombus[1] - rhombus[3]))
    assert max(diagonals) >= 1.5 * min(diagonals) - 1e-9  # equal sides, unequal diagonals
    np.testing.assert_allclose(_sides(rhombus), _sides(rhombus)[0])
    assert len(poly["star4"]) == 8 and len(poly["star6"]) == 12  # the class star has 5 points
    assert _interior_angles_deg(poly["star6"])[0] < 80.0  # sharp tips, not a cross's corners
    for kind in ("tee", "ell"):
        assert len(poly[kind]) in (6, 8)  # the cross has 12 vertices
        np.testing.assert_allclose(_interior_angles_deg(poly[kind]), 90.0, atol=1e-6)


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="expected a kind in"):
        lookalike_polygon("square", 10.0, 0.0, 0.5)


def test_draw_lookalike_paints_in_place_within_its_size() -> None:
    kinds, painted_any = set(), 0
    for seed in range(40):
        image = np.zeros((120, 160, 3), np.uint8)
        kind = draw_lookalike(np.random.default_rng(seed), image, (255, 255, 255), None)
        kinds.add(kind)
        painted = image[..., 0] >= 128
        if painted.any():
            painted_any += 1
            ys, xs = np.nonzero(painted)
            # The diameter is at most 0.6 x the short side; a pixel of antialiasing.
            assert max(np.ptp(xs), np.ptp(ys)) + 1 <= 0.6 * 120 + 2
    assert kinds <= set(LOOKALIKE_KINDS) and len(kinds) >= 6
    assert painted_any >= 35  # the centre lies in the image: nearly always something shows


def test_lookalikes_are_never_annotated() -> None:
    knobs = GeneratorKnobs(lookalikes=1.0)
    drawn = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        image = random_background(rng, 160, 200)
        drawn += len(draw_clutter(rng, image, knobs.lookalikes))
        compositor = place_shapes(rng, image, knobs)
        objects = compositor.objects()
        # Every annotation is one of the painted class shapes, in paint order.
        labels = [layer.spec.label for layer in compositor.layers]
        assert len(objects) <= len(labels) and all(o.label in CLASSES for o in objects)
        it = iter(labels)
        assert all(any(o.label == label for label in it) for o in objects)
    assert drawn >= 40
