"""The in-memory LRU of selective-search results: what the key depends on, eviction order,
capacity 0, capped reads, copies, counters."""

from __future__ import annotations

import numpy as np
import pytest

from app.data.proposal_lru import ProposalLru, proposal_lru_key
from app.model.config import ProposalConfig


def _boxes(n: int, offset: float = 0.0) -> np.ndarray:
    return np.arange(n * 4, dtype=np.float32).reshape(n, 4) + offset


def test_key_depends_on_pixels_shape_and_settings_but_not_on_the_cap() -> None:
    image = np.arange(2 * 6 * 3, dtype=np.uint8).reshape(2, 6, 3)
    config = ProposalConfig(max_side=500, min_size=4.0, max_proposals=2000)
    key = proposal_lru_key(image, config)
    assert len(key) == 64 and int(key, 16) >= 0
    assert proposal_lru_key(image.copy(), config) == key
    assert proposal_lru_key(image, ProposalConfig(max_side=500, min_size=4.0)) == key
    assert (
        proposal_lru_key(image, ProposalConfig(max_side=500, min_size=4.0, max_proposals=5)) == key
    )
    changed = image.copy()
    changed[1, 5, 2] ^= 1
    others = {
        proposal_lru_key(changed, config),
        proposal_lru_key(image.reshape(6, 2, 3), config),  # same bytes, another shape
        proposal_lru_key(np.ascontiguousarray(image[:, ::-1]), config),
        proposal_lru_key(image, ProposalConfig(max_side=400, min_size=4.0)),
        proposal_lru_key(image, ProposalConfig(max_side=500, min_size=2.0)),
    }
    assert len(others) == 5 and key not in others


def test_a_non_contiguous_view_hashes_as_its_contiguous_copy() -> None:
    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    view = image[:, ::2]
    config = ProposalConfig()
    assert proposal_lru_key(view, config) == proposal_lru_key(np.ascontiguousarray(view), config)


def test_get_counts_hits_and_misses_and_caps_the_stored_list() -> None:
    cache = ProposalLru(4)
    assert cache.get("a") is None
    cache.put("a", _boxes(5))
    np.testing.assert_array_equal(cache.get("a"), _boxes(5))
    np.testing.assert_array_equal(cache.get("a", 2), _boxes(5)[:2])
    np.testing.assert_array_equal(cache.get("a", 99), _boxes(5))
    assert cache.get("a", 0).shape == (0, 4)  # type: ignore[union-attr]
    assert (cache.hits, cache.misses, len(cache)) == (4, 1, 1)


def test_reads_are_writable_copies_that_leave_the_entry_alone() -> None:
    cache = ProposalLru(2)
    given = _boxes(3)
    cache.put("a", given)
    given[:] = -1  # the caller's array is not the entry
    got = cache.get("a")
    assert got is not None and got.flags.writeable and got.dtype == np.float32
    got[:] = -2
    np.testing.assert_array_equal(cache.get("a"), _boxes(3))


def test_least_recently_used_goes_first() -> None:
    cache = ProposalLru(2)
    cache.put("a", _boxes(1, 0))
    cache.put("b", _boxes(1, 10))
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("c", _boxes(1, 20))  # evicts b
    assert cache.get("b") is None
    np.testing.assert_array_equal(cache.get("a"), _boxes(1, 0))
    np.testing.assert_array_equal(cache.get("c"), _boxes(1, 20))
    cache.put("a", _boxes(2, 30))  # replacing refreshes and keeps the size
    assert len(cache) == 2
    np.testing.assert_array_equal(cache.get("a"), _boxes(2, 30))


def test_clear_drops_every_entry_and_keeps_the_counts() -> None:
    cache = ProposalLru(3)
    cache.put("a", _boxes(1))
    assert cache.get("a") is not None
    cache.clear()
    assert len(cache) == 0 and cache.get("a") is None
    assert (cache.hits, cache.misses) == (1, 1)


def test_capacity_zero_stores_nothing_and_negative_is_refused() -> None:
    cache = ProposalLru(0)
    cache.put("a", _boxes(2))
    assert len(cache) == 0 and cache.get("a") is None
    with pytest.raises(ValueError, match="expected a capacity >= 0, got -1"):
        ProposalLru(-1)


def test_empty_lists_are_stored_too() -> None:
    cache = ProposalLru(1)
    cache.put("a", np.zeros((0, 4), np.float32))
    got = cache.get("a", 10)
    assert got is not None and got.shape == (0, 4) and got.dtype == np.float32
