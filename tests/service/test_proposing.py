"""The service's proposal stage: the process pool gives what ``propose`` gives in-process,
the cache serves any cap from one search, a passed deadline cancels the search and leaves the
pool usable, and a dead worker is replaced."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cv2
import numpy as np
import pytest

from app.data.proposals import propose, search_boxes
from app.model.config import ProposalConfig
from app.service.batching import DeadlineExceeded
from app.service.metrics import ServiceMetrics
from app.service.proposing import ProposalStage

CONFIG = ProposalConfig(max_side=120, max_proposals=60)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """scikit-image's astronaut at 120 x 120: more boxes than the cap."""
    from skimage import data

    return cv2.resize(data.astronaut(), (120, 120), interpolation=cv2.INTER_AREA)


@pytest.fixture
def cpu() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as threads:
        yield threads


def _stage(cpu: ThreadPoolExecutor, config: ProposalConfig = CONFIG, **kwargs: Any) -> Any:
    values: dict[str, Any] = {"workers": 2, "cache_size": 0, "metrics": ServiceMetrics()}
    values.update(kwargs)
    return ProposalStage(config, cpu=cpu, **values)


async def _propose(stage: ProposalStage, image: np.ndarray, **kwargs: Any) -> Any:
    deadline = asyncio.get_running_loop().time() + kwargs.pop("timeout_s", 60.0)
    return await stage.propose(image, deadline=deadline, **kwargs)


def test_the_pool_gives_what_propose_gives_in_process(
    photo: np.ndarray, cpu: ThreadPoolExecutor
) -> None:
    stage = _stage(cpu)
    try:
        boxes, source = asyncio.run(_propose(stage, photo, max_proposals=None))
        capped, _ = asyncio.run(_propose(stage, photo, max_proposals=7))
    finally:
        stage.shutdown()
    assert source == "selective_search"
    assert len(search_boxes(photo, CONFIG)) > CONFIG.max_proposals
    expected = propose(photo, CONFIG)
    assert boxes.dtype == np.float32 and boxes.tobytes() == expected.tobytes()
    np.testing.assert_array_equal(capped, propose(photo, CONFIG, max_proposals=7))


def test_the_cache_serves_any_cap_from_one_search(
    photo: np.ndarray, cpu: ThreadPoolExecutor
) -> None:
    calls: list[tuple[int, ...]] = []

    def searcher(image: np.ndarray, config: ProposalConfig) -> np.ndarray:
        calls.append(image.shape)
        return search_boxes(image, config)

    metrics = ServiceMetrics()
    stage = _stage(cpu, cache_size=2, metrics=metrics, searcher=searcher)
    assert stage.pool is None  # a searcher replaces the pool
    first, first_source = asyncio.run(_propose(stage, photo, max_proposals=None))
    again, again_source = asyncio.run(_propose(stage, photo, max_proposals=None))
    five, five_source = asyncio.run(_propose(stage, photo, max_proposals=5))
    more, _ = asyncio.run(_propose(stage, photo, max_proposals=1000))
    assert (first_source, again_source, five_source) == ("selective_search", "cache", "cache")
    assert calls == [photo.shape]
    np.testing.assert_array_equal(again, first)
    np.testing.assert_array_equal(five, propose(photo, CONFIG, max_proposals=5))
    np.testing.assert_array_equal(more, search_boxes(photo, CONFIG))  # beyond the default cap
    _, other_source = asyncio.run(_propose(stage, photo[::-1].copy(), max_proposals=None))
    assert other_source == "selective_search" and len(calls) == 2
    assert metrics.proposal_cache_hits._value.get() == 3
    assert metrics.proposal_cache_misses._value.get() == 2
    assert metrics.proposal_cache_entries._value.get() == 2


def test_a_passed_deadline_cancels_the_search_and_the_pool_stays_usable(
    cpu: ThreadPoolExecutor,
) -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)  # slow: many tiny segments
    config = ProposalConfig(max_side=300, max_proposals=50)
    small = cv2.resize(noise, (40, 40), interpolation=cv2.INTER_AREA)
    stage = _stage(cpu, config, workers=1)
    try:
        stage.warm_up()
        with pytest.raises(DeadlineExceeded, match="selective search"):
            asyncio.run(_propose(stage, noise, max_proposals=None, timeout_s=0.15))
        boxes, _ = asyncio.run(_propose(stage, small, max_proposals=None))
    finally:
        stage.shutdown()
    np.testing.assert_array_equal(boxes, propose(small, config))


def test_a_dead_worker_is_replaced_and_the_request_still_answered(
    photo: np.ndarray, cpu: ThreadPoolExecutor
) -> None:
    stage = _stage(cpu, workers=1)
    try:
        stage.warm_up()
        broken = stage.pool
        for pid in list(broken._processes):
            os.kill(pid, signal.SIGKILL)
        boxes, source = asyncio.run(_propose(stage, photo, max_proposals=None))
        assert stage.pool is not broken
    finally:
        stage.shutdown()
    assert source == "selective_search"
    np.testing.assert_array_equal(boxes, propose(photo, CONFIG))
