"""Backgrounds and clutter: sizes, determinism for a generator state, not-a-class clutter."""

from __future__ import annotations

import numpy as np
import pytest

from app.data.shapes.backgrounds import (
    _SKIMAGE_PHOTOS,
    _SKLEARN_PHOTOS,
    PHOTO_SPLITS,
    _irregular_polygon,
    background_sources,
    background_with_source,
    draw_clutter,
    photo_split_names,
    random_background,
    random_colour,
)
from app.data.shapes.lookalikes import LOOKALIKE_KINDS


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


def test_photo_partition_puts_every_photo_in_exactly_one_split() -> None:
    parts = [name for split in ("train", "val", "test") for name in PHOTO_SPLITS[split]]
    assert set(PHOTO_SPLITS) == {"train", "val", "test"}
    assert len(parts) == len(set(parts))  # no photograph in two splits
    assert sorted(parts) == sorted(_SKIMAGE_PHOTOS + _SKLEARN_PHOTOS)  # every one in one
    assert sorted(parts) == sorted(background_sources())  # all installed here
    assert all(PHOTO_SPLITS[split] for split in ("val", "test"))


def _sources(split: str | None, draws: int = 60) -> set[str]:
    rng = np.random.default_rng(11)
    names = {background_with_source(rng, 24, 32, split)[1] for _ in range(draws)}
    return {name for name in names if name is not None}


def test_background_split_keeps_the_photographs_apart() -> None:
    used = {split: _sources(split) for split in ("train", "val", "test")}
    for split, names in used.items():
        assert names and names <= set(PHOTO_SPLITS[split])
        assert set(photo_split_names(split)) == set(PHOTO_SPLITS[split])
    assert not used["train"] & used["test"] and not used["train"] & used["val"]
    assert not used["val"] & used["test"]
    everything = _sources(None, draws=120)  # without the split, test photographs appear too
    assert everything & set(PHOTO_SPLITS["test"]) and everything & set(PHOTO_SPLITS["train"])
    with pytest.raises(ValueError, match="expected a split in"):
        background_with_source(np.random.default_rng(0), 8, 8, "dev")


@pytest.mark.parametrize("seed", range(6))
def test_background_with_source_draws_like_random_background(seed: int) -> None:
    image, name = background_with_source(np.random.default_rng(seed), 37, 53)
    np.testing.assert_array_equal(image, random_background(np.random.default_rng(seed), 37, 53))
    assert name is None or name in background_sources()


def test_clutter_draws_lookalikes_only_when_asked() -> None:
    plain = [
        draw_clutter(np.random.default_rng(s), np.zeros((60, 80, 3), np.uint8)) for s in range(20)
    ]
    assert not any(kind.startswith("lookalike:") for kinds in plain for kind in kinds)
    assert {kind for kinds in plain for kind in kinds} == {"polygon", "lines", "text", "ellipse"}
    only = [
        draw_clutter(np.random.default_rng(s), np.zeros((60, 80, 3), np.uint8), lookalikes=1.0)
        for s in range(20)
    ]
    kinds = [kind for ks in only for kind in ks]
    assert kinds and all(kind.startswith("lookalike:") for kind in kinds)
    assert {kind.split(":")[1] for kind in kinds} <= set(LOOKALIKE_KINDS)
