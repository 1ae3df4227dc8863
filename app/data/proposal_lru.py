"""An in-memory LRU cache of selective-search results, keyed by image content and settings.

The key is the SHA-256 of the decoded pixels (with their shape, so two images of the same
bytes and another shape differ) and of the proposal settings that change the boxes
(``max_side``, ``min_size``, and the search method's version). The cap (``max_proposals``) is
not part of it: an entry holds the uncapped list of :func:`app.data.proposals.search_boxes`,
and a read takes the first ``cap`` boxes, which is exactly what the search would have given at
that cap (see :mod:`app.data.proposals`). So a ``/classify?views=detect`` after a ``/detect``,
a retry, or a multi-scale request after a single-scale one on the same image all hit.

Entries are read-only arrays; :meth:`ProposalLru.get` returns a copy. Thread-safe.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict

import numpy as np

from app.data.proposals import SEARCH_METHOD
from app.model.config import ProposalConfig


def proposal_lru_key(image_rgb: np.ndarray, config: ProposalConfig) -> str:
    """Hex SHA-256 of ``image_rgb`` (ndarray[H, W, 3] uint8: shape, dtype and pixels) and of
    the settings that change the uncapped proposals."""
    settings = json.dumps(
        {"max_side": config.max_side, "min_size": config.min_size, "method": SEARCH_METHOD},
        sort_keys=True,
    )
    digest = hashlib.sha256()
    digest.update(f"{image_rgb.dtype.str}{image_rgb.shape}|{settings}|".encode())
    digest.update(np.ascontiguousarray(image_rgb).data)
    return digest.hexdigest()


class ProposalLru:
    """At most ``capacity`` uncapped proposal lists (``capacity`` 0: nothing is stored),
    least recently used evicted first, with hit and miss counts."""

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"expected a capacity >= 0, got {capacity}")
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def get(self, key: str, cap: int | None = None) -> np.ndarray | None:
        """The first ``cap`` boxes (all when ``None``) stored under ``key`` as a new
        ndarray[N, 4] float32, or ``None``; counts a hit or a miss."""
        with self._lock:
            boxes = self._entries.get(key)
            if boxes is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
        return np.array(boxes if cap is None else boxes[:cap], dtype=np.float32)

    def clear(self) -> None:
        """Drop every entry (the counts stay)."""
        with self._lock:
            self._entries.clear()

    def put(self, key: str, boxes: np.ndarray) -> None:
        """Store a read-only copy of ``boxes`` (ndarray[N, 4]) under ``key``, evicting the least
        recently used entry when full."""
        if self.capacity == 0:
            return
        stored = np.array(boxes, dtype=np.float32).reshape(-1, 4)
        stored.flags.writeable = False
        with self._lock:
            self._entries[key] = stored
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
