"""Backgrounds and clutter: sizes, determinism for a generator state, not-a-class clutter."""

from __future__ import annotations

import numpy as np
import pytest

from app.data.shapes.backgrounds import (
    _irregular_polygon,
    background_sources,
    draw_clutter,
    random_background,
    random_colour,
)


@pytest.mark.parametrize("seed", range(8))
def test_background_has_the_requested_size_and_is_deterministic(seed: int) -> None:
    a = random_background(np.random.default_rng(seed), 37, 53)
    b = random_background(np.random.default_rng(seed), 37, 53)
    assert a.shape == (37, 53, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)


def test_different_generator_states_give_different_backgrounds() -> None:
    images = [random_background(np.random.default_rng(seed), 40, 60) for seed in range(4)]
    assert len({image.tobytes() for image in images}) == 4


def test_background_sources_are_installed_photographs() -> None:
    names = background_sources()
    assert names, "scikit-image and scikit-learn ship sample photographs"
    assert all(name.endswith((".png", ".jpg")) for name in names)
    assert "coins.png" not in names  # coins are circles: never a background


def _clutter(seed: int) -> np.ndarray:
    image = np.full((120, 160, 3), 127, np.uint8)
    draw_clutter(np.random.default_rng(seed), image)  # paints in place
    return image


def test_clutter_is_deterministic_and_painted_in_place() -> None:
    np.testing.assert_array_equal(_clutter(3), _clutter(3))
    plain = np.full((120, 160, 3), 127, np.uint8)
    assert any(not np.array_equal(_clutter(seed), plain) for seed in range(10))


@pytest.mark.parametrize("seed", range(20))
def test_irregular_polygons_have_unequal_sides(seed: int) -> None:
    pts = _irregular_polygon(np.random.default_rng(seed), np.array([50.0, 50.0]), 30.0)
    sides = np.linalg.norm(pts - np.roll(pts, 1, axis=0), axis=1)
    assert 3 <= len(pts) <= 8
    assert sides.max() >= 1.6 * sides.min()
    assert np.linalg.norm(pts - 50.0, axis=1).max() <= 30.0 + 1e-9


def test_random_colour_is_bgr_bytes() -> None:
    rng = np.random.default_rng(0)
    colours = [random_colour(rng) for _ in range(200)]
    assert all(
        len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c) for c in colours
    )
    assert len(set(colours)) > 190
