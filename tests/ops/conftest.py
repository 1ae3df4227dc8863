"""Fixtures for the ops tests: random and hand-built pooling regions."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

#: ``(batch, height, width, count, seed) -> LongTensor[count, 5]`` of valid random regions.
RegionFactory = Callable[[int, int, int, int, int], Tensor]


def _random_regions(batch: int, height: int, width: int, count: int, seed: int) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    index = torch.randint(0, batch, (count,), generator=gen)
    cols = torch.randint(0, width, (count, 2), generator=gen).sort(dim=1).values
    rows = torch.randint(0, height, (count, 2), generator=gen).sort(dim=1).values
    return torch.stack([index, cols[:, 0], rows[:, 0], cols[:, 1], rows[:, 1]], dim=1)


def _edge_regions(batch: int, height: int, width: int) -> Tensor:
    """Regions built on purpose: 1-cell windows in every corner and the middle, the whole map,
    single rows and columns, windows smaller than the finest level, every border touched, in
    every image of the batch."""
    h1, w1 = height - 1, width - 1
    cells = [
        (0, 0, 0, 0),  # 1x1, top-left corner
        (w1, 0, w1, 0),  # 1x1, top-right
        (0, h1, 0, h1),  # 1x1, bottom-left
        (w1, h1, w1, h1),  # 1x1, bottom-right
        (w1 // 2, h1 // 2, w1 // 2, h1 // 2),  # 1x1, middle
        (0, 0, w1, h1),  # the whole map
        (0, h1 // 2, w1, h1 // 2),  # one full row
        (w1 // 2, 0, w1 // 2, h1),  # one full column
        (0, 0, min(1, w1), min(2, h1)),  # 2x3: more bins than cells, top-left border
        (max(0, w1 - 4), max(0, h1 - 4), w1, h1),  # up to 5x5, bottom-right border
        (0, max(0, h1 - 2), w1, h1),  # full width, bottom border
        (max(0, w1 - 1), 0, w1, h1),  # full height, right border
    ]
    rows = [(b, *cell) for b in range(batch) for cell in cells]
    return torch.tensor(rows, dtype=torch.int64)


@pytest.fixture
def random_regions() -> RegionFactory:
    """Factory of valid random regions (left <= right, top <= bottom, any batch index)."""
    return _random_regions


@pytest.fixture
def edge_regions() -> Callable[[int, int, int], Tensor]:
    """Factory ``(batch, height, width) -> LongTensor[K, 5]`` of hand-built edge regions."""
    return _edge_regions


def random_map(
    batch: int, channels: int, height: int, width: int, dtype: torch.dtype, seed: int
) -> Tensor:
    """Random ``[B, C, H, W]`` map with distinct values (so every bin's max is unambiguous)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, height, width, generator=gen).to(dtype)


@pytest.fixture
def make_map() -> Callable[[int, int, int, int, torch.dtype, int], Tensor]:
    """Factory of random feature maps ``(B, C, H, W, dtype, seed) -> Tensor[B, C, H, W]``."""
    return random_map
