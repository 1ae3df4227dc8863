"""Parallel selective search: the job list, the merge rule on hand-worked cases, exactness
against one monolithic OpenCV call on real photos and a generated image, reproducibility for
any number of workers, the cap, degenerate input."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import cv2
import numpy as np
import pytest
from references.selective_search import opencv_fast_selective_search
from skimage import data

from app.data.selective_search import (
    STRATEGY_COLOR_FILL_TEXTURE_SIZE,
    STRATEGY_FILL_TEXTURE_SIZE,
    SearchJob,
    boxes_from_rects,
    create_pool,
    fast_mode_jobs,
    merge_job_rects,
    run_job,
    selective_search_parallel,
)

CFTS, FTS = STRATEGY_COLOR_FILL_TEXTURE_SIZE, STRATEGY_FILL_TEXTURE_SIZE
SIGMA = float(np.float32(0.8))  # OpenCV's ``float sigma = 0.8f`` as a double


def _small(image: np.ndarray, side: int = 200) -> np.ndarray:
    """``image`` resized so that its longest side is ``side`` px."""
    height, width = image.shape[:2]
    factor = max(height, width) / side
    size = (round(width / factor), round(height / factor))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _shapes_image(seed: int = 7) -> np.ndarray:
    """A 150 x 200 RGB image: a noisy gradient with 12 random filled shapes."""
    rng = np.random.default_rng(seed)
    image = np.zeros((150, 200, 3), np.uint8)
    image[:] = np.linspace(40, 200, 200, dtype=np.uint8)[None, :, None]
    for _ in range(12):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = (int(v) for v in rng.integers(0, 180, 2))
        if rng.random() < 0.5:
            cv2.rectangle(image, (x, y), (x + int(rng.integers(10, 60)), y + 30), color, -1)
        else:
            cv2.circle(image, (x, y), int(rng.integers(6, 30)), color, -1)
    noise = rng.integers(-12, 13, image.shape)
    return np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)


IMAGES = {
    "astronaut": lambda: _small(data.astronaut()),
    "coffee": lambda: _small(data.coffee()),
    "chelsea": lambda: _small(data.chelsea()),
    "shapes": _shapes_image,
}


def _as_set(boxes: np.ndarray) -> set[tuple[float, ...]]:
    return {tuple(row) for row in boxes.tolist()}


@pytest.fixture(scope="module")
def pools() -> Iterator[dict[int, ProcessPoolExecutor]]:
    made = {workers: create_pool(workers) for workers in (1, 2, 3)}
    yield made
    for pool in made.values():
        pool.shutdown()


# ------------------------------------------------------------------------ the job list


def test_fast_mode_jobs_follow_opencv_process_order() -> None:
    # switchToSelectiveSearchFast: images HSV, Lab; k = 150, 300, 450; two strategies.
    expected = [
        SearchJob(space, k, SIGMA, (CFTS, FTS))
        for space in ("hsv", "lab")
        for k in (150.0, 300.0, 450.0)
    ]
    assert list(fast_mode_jobs()) == expected
    split = [
        SearchJob(space, k, SIGMA, (strategy,))
        for space in ("hsv", "lab")
        for k in (150.0, 300.0, 450.0)
        for strategy in (CFTS, FTS)
    ]
    assert list(fast_mode_jobs(split_strategies=True)) == split


# ----------------------------------------------------------------- merge, hand-worked


def test_merge_orders_by_quantile_then_job_and_keeps_first_occurrence() -> None:
    a, b, c, d, e = ([i, i, 1, 1] for i in range(5))
    # job 0: quantiles 1/8, 3/8, 5/8, 7/8; job 1: 1/4, 3/4 (its ``a`` repeats job 0's).
    merged = merge_job_rects([np.array([a, b, c, d]), np.array([e, a])], None)
    np.testing.assert_array_equal(merged, [a, e, b, c, d])
    assert merged.dtype == np.int32


def test_merge_breaks_ties_by_job_index_and_caps() -> None:
    a, b, c, d = ([i, 0, 2, 3] for i in range(4))
    per_job = [np.array([a, b]), np.array([c, d])]
    np.testing.assert_array_equal(merge_job_rects(per_job, None), [a, c, b, d])
    np.testing.assert_array_equal(merge_job_rects(per_job, 3), [a, c, b])
    assert merge_job_rects(per_job, 0).shape == (0, 4)
    assert merge_job_rects([np.zeros((0, 4), np.int32)], None).shape == (0, 4)


def test_boxes_from_rects_uses_inclusive_extents() -> None:
    boxes = boxes_from_rects(np.array([[3, 4, 10, 2], [0, 0, 1, 1]]))
    np.testing.assert_array_equal(boxes, [[3, 4, 12, 5], [0, 0, 0, 0]])
    assert boxes.dtype == np.float32


# ------------------------------------------------------------ exact against OpenCV


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_same_box_set_as_one_monolithic_call(
    name: str, pools: dict[int, ProcessPoolExecutor]
) -> None:
    image = IMAGES[name]()
    reference = opencv_fast_selective_search(image)
    boxes = selective_search_parallel(image, workers=pools[2], max_proposals=None)
    assert len(reference) > 20
    assert len(boxes) == len(_as_set(boxes))  # unique
    assert _as_set(boxes) == _as_set(reference)


def test_split_strategies_give_the_same_set(pools: dict[int, ProcessPoolExecutor]) -> None:
    image = IMAGES["coffee"]()
    boxes = selective_search_parallel(
        image, workers=pools[3], max_proposals=None, split_strategies=True
    )
    assert _as_set(boxes) == _as_set(opencv_fast_selective_search(image))


def test_a_job_is_the_union_of_its_strategies() -> None:
    image = IMAGES["chelsea"]()
    both = fast_mode_jobs()[4]  # Lab, k = 300, two strategies
    one = [job for job in fast_mode_jobs(split_strategies=True) if job.k == 300.0][2:]
    assert [job.color_space for job in one] == ["lab", "lab"]
    union = _as_set(run_job(image, one[0])) | _as_set(run_job(image, one[1]))
    assert _as_set(run_job(image, both)) == union


def test_channel_order_is_respected() -> None:
    image = IMAGES["shapes"]()
    rgb = selective_search_parallel(image, max_proposals=None)
    bgr = selective_search_parallel(
        np.ascontiguousarray(image[:, :, ::-1]), channel_order="bgr", max_proposals=None
    )
    np.testing.assert_array_equal(rgb, bgr)


# ------------------------------------------------------------------ reproducibility


@pytest.mark.parametrize("name", ["astronaut", "shapes"])
def test_same_order_for_any_number_of_workers_and_calls(
    name: str, pools: dict[int, ProcessPoolExecutor]
) -> None:
    image = IMAGES[name]()
    first = selective_search_parallel(image, workers=0, max_proposals=None)
    for pool in pools.values():
        for _ in range(2):
            np.testing.assert_array_equal(
                selective_search_parallel(image, workers=pool, max_proposals=None), first
            )
    with ThreadPoolExecutor(3) as threads:  # jobs share rand() here: the lock keeps the order
        np.testing.assert_array_equal(
            selective_search_parallel(image, workers=threads, max_proposals=None), first
        )


def test_a_job_is_reproducible() -> None:
    image = IMAGES["astronaut"]()
    job = fast_mode_jobs()[0]
    np.testing.assert_array_equal(run_job(image, job), run_job(image, job))


def test_a_pool_made_for_the_call_gives_the_same_answer() -> None:
    image = IMAGES["shapes"]()
    np.testing.assert_array_equal(
        selective_search_parallel(image, workers=2),
        selective_search_parallel(image, workers=0),
    )


# ------------------------------------------------------------------------------ cap


@pytest.mark.parametrize("cap", [0, 1, 37, 10_000])
def test_cap_keeps_a_prefix_of_the_merged_order(
    cap: int, pools: dict[int, ProcessPoolExecutor]
) -> None:
    image = IMAGES["coffee"]()
    everything = selective_search_parallel(image, workers=pools[2], max_proposals=None)
    capped = selective_search_parallel(image, workers=pools[2], max_proposals=cap)
    assert capped.shape == (min(cap, len(everything)), 4)
    np.testing.assert_array_equal(capped, everything[:cap])
    np.testing.assert_array_equal(
        selective_search_parallel(image, workers=pools[1], max_proposals=cap), capped
    )


def test_default_cap_is_2000() -> None:
    # 20 x 20 blocks of 12 x 12 px in random colours: many segments (OpenCV's segmentation
    # merges any segment under 100 px, so plain pixel noise gives few).
    blocks = np.random.default_rng(0).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    image = cv2.resize(blocks, (240, 240), interpolation=cv2.INTER_NEAREST)
    everything = selective_search_parallel(image, max_proposals=None)
    assert len(everything) > 2000
    np.testing.assert_array_equal(selective_search_parallel(image), everything[:2000])


# ----------------------------------------------------------------- degenerate input


def test_empty_image_gives_an_empty_float_array() -> None:
    for shape in [(0, 0, 3), (0, 5, 3), (4, 0, 3)]:
        boxes = selective_search_parallel(np.zeros(shape, np.uint8))
        assert boxes.shape == (0, 4) and boxes.dtype == np.float32


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (10, 10)])
def test_tiny_images_give_the_whole_image(shape: tuple[int, int]) -> None:
    image = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
    boxes = selective_search_parallel(image)
    height, width = shape
    np.testing.assert_array_equal(boxes, [[0, 0, width - 1, height - 1]])
    np.testing.assert_array_equal(boxes, opencv_fast_selective_search(image))


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"expected an image of shape \[H, W, 3\], got \(5, 5\)"):
        selective_search_parallel(np.zeros((5, 5), np.uint8))
    with pytest.raises(ValueError, match="expected a uint8 image, got float32"):
        selective_search_parallel(np.zeros((5, 5, 3), np.float32))
    with pytest.raises(ValueError, match="expected max_proposals >= 0 or None, got -1"):
        selective_search_parallel(np.zeros((5, 5, 3), np.uint8), max_proposals=-1)
    with pytest.raises(ValueError, match="expected workers >= 0 or an Executor, got -2"):
        selective_search_parallel(np.zeros((5, 5, 3), np.uint8), workers=-2)
    with pytest.raises(ValueError, match="expected channel_order 'rgb' or 'bgr', got 'hsv'"):
        selective_search_parallel(np.zeros((5, 5, 3), np.uint8), channel_order="hsv")  # type: ignore[arg-type]
