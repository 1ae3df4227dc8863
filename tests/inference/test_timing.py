"""``timed``: the one stage timer."""

from __future__ import annotations

import time

import pytest

from app.inference.timing import timed


def test_adds_the_blocks_wall_time_to_its_stage() -> None:
    timings: dict[str, float] = {"decode": 1.0}
    with timed(timings, "sleep"):
        time.sleep(0.02)
    with timed(timings, "sleep"):
        time.sleep(0.02)
    with timed(timings, "decode"):
        pass
    assert 40.0 <= timings["sleep"] < 1000.0
    assert 1.0 <= timings["decode"] < 50.0
    assert timings["sleep"] == round(timings["sleep"], 3)


def test_counts_a_block_that_raises_and_none_times_nothing() -> None:
    timings: dict[str, float] = {}
    with pytest.raises(RuntimeError), timed(timings, "failing"):
        time.sleep(0.01)
        raise RuntimeError("boom")
    assert timings["failing"] >= 10.0
    with timed(None, "anything"):
        pass
