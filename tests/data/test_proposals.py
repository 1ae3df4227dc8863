"""Selective-search proposals: frame, de-duplication, degenerate boxes, cap, downscaling, and
the wiring of the parallel search (mapping back, cap order, reproducibility, exactness)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
from references.selective_search import propose_monolithic

from app.data.proposals import (
    SearchImage,
    boxes_in_original_frame,
    propose,
    search_boxes,
    search_image,
)
from app.model.config import ProposalConfig


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    """A 240 x 320 image with three flat shapes on a smooth background."""
    image = np.full((240, 320, 3), 200, np.uint8)
    image[:, :, 0] = np.linspace(120, 220, 320, dtype=np.uint8)[None, :]
    cv2.rectangle(image, (30, 40), (110, 120), (200, 30, 30), -1)
    cv2.circle(image, (220, 80), 45, (30, 160, 30), -1)
    cv2.fillPoly(image, [np.array([[120, 220], [200, 140], [280, 220]])], (20, 20, 180))
    return image


def test_boxes_are_inside_the_image_and_unique(scene: np.ndarray) -> None:
    boxes = propose(scene, ProposalConfig(max_side=0))
    assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 4
    assert len(boxes) > 3
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= 319).all() and (boxes[:, 3] <= 239).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert len(np.unique(boxes, axis=0)) == len(boxes)


def test_the_drawn_square_is_found(scene: np.ndarray) -> None:
    boxes = propose(scene, ProposalConfig(max_side=0))
    target = np.array([30, 40, 110, 120], np.float32)
    assert np.abs(boxes - target).max(axis=1).min() <= 2.0


def test_downscaled_search_maps_boxes_back(scene: np.ndarray) -> None:
    big = cv2.resize(scene, (640, 480), interpolation=cv2.INTER_NEAREST)
    boxes = propose(big, ProposalConfig(max_side=320))
    target = np.array([60, 80, 221, 241], np.float32)
    assert np.abs(boxes - target).max(axis=1).min() <= 4.0
    assert (boxes[:, 2] <= 639).all() and (boxes[:, 3] <= 479).all()


def test_cap_and_min_size(scene: np.ndarray) -> None:
    assert len(propose(scene, ProposalConfig(max_side=0), max_proposals=5)) == 5
    boxes = propose(scene, ProposalConfig(max_side=0, min_size=60))
    assert ((boxes[:, 2] - boxes[:, 0] >= 60) & (boxes[:, 3] - boxes[:, 1] >= 60)).all()


def test_rejects_non_rgb_input() -> None:
    with pytest.raises(ValueError, match=r"expected an RGB uint8 image of shape \[H, W, 3\]"):
        propose(np.zeros((10, 10), np.uint8))


# ------------------------------------------------------------- wiring of the parallel search


def _as_set(boxes: np.ndarray) -> set[tuple[float, ...]]:
    return {tuple(row) for row in boxes.tolist()}


def test_boxes_map_back_by_inclusive_extents_then_filter_and_dedupe() -> None:
    # A 100 x 80 image searched on its 50 x 40 copy: factor 2 on both axes.
    search = SearchImage(np.zeros((40, 50, 3), np.uint8), width=100, height=80)
    small = np.array(
        [
            [10, 5, 19, 14],  # pixels 10..19 of the copy -> 20..39 of the original
            [0, 0, 49, 39],  # the whole copy -> the whole image
            [10, 5, 19, 14],  # a repeat: dropped
            [30, 30, 31, 31],  # 4 x 4 original pixels: width 3 < min_size 4, dropped
            [30, 30, 32, 32],  # 6 x 6: width 5, kept
        ],
        np.float32,
    )
    boxes = boxes_in_original_frame(search, small, ProposalConfig(min_size=4.0))
    expected = [[20, 10, 39, 29], [0, 0, 99, 79], [60, 60, 65, 65]]
    np.testing.assert_array_equal(boxes, np.array(expected, np.float32))
    assert boxes.dtype == np.float32
    empty = boxes_in_original_frame(search, np.zeros((0, 4), np.float32), ProposalConfig())
    assert empty.shape == (0, 4) and empty.dtype == np.float32


def test_search_image_downscales_the_longest_side_only_when_larger(scene: np.ndarray) -> None:
    small = search_image(scene, ProposalConfig(max_side=160))
    assert small.bgr.shape == (120, 160, 3) and (small.width, small.height) == (320, 240)
    np.testing.assert_array_equal(search_image(scene, ProposalConfig(max_side=0)).bgr,
                                  scene[:, :, ::-1])  # fmt: skip
    assert search_image(scene, ProposalConfig(max_side=400)).bgr.shape == (240, 320, 3)


def test_cap_keeps_the_first_boxes_of_the_uncapped_order(scene: np.ndarray) -> None:
    config = ProposalConfig(max_side=160)
    every = search_boxes(scene, config)
    assert len(every) > 10
    for cap in (1, 7, len(every) + 5):
        np.testing.assert_array_equal(propose(scene, config, max_proposals=cap), every[:cap])
    np.testing.assert_array_equal(
        propose(scene, ProposalConfig(max_side=160, max_proposals=5)), every[:5]
    )


def test_same_answer_in_process_and_on_executors_and_call_after_call(scene: np.ndarray) -> None:
    # Process pools: tests/data/test_selective_search.py and tests/service/test_proposing.py.
    config = ProposalConfig(max_side=160, max_proposals=50)
    first = propose(scene, config)
    with ThreadPoolExecutor(2) as threads:
        np.testing.assert_array_equal(propose(scene, config, workers=threads), first)
    np.testing.assert_array_equal(propose(scene, config), first)


def test_same_set_as_the_monolithic_call_before_the_cap() -> None:
    from skimage import data

    photo = cv2.resize(data.coffee(), (150, 100), interpolation=cv2.INTER_AREA)
    config = ProposalConfig(max_side=120, max_proposals=100_000)
    parallel = propose(photo, config)
    assert len(parallel) > 30
    assert _as_set(parallel) == _as_set(propose_monolithic(photo, config))
    assert len(propose_monolithic(photo, config, max_proposals=20)) == 20


def test_an_image_too_small_for_any_box_gives_an_empty_float32_array() -> None:
    boxes = propose(np.full((3, 3, 3), 128, np.uint8))
    assert boxes.shape == (0, 4) and boxes.dtype == np.float32
