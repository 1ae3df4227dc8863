"""The slow, obviously correct ``roi_spp``: per window, per level, per bin, slice and max."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from app.ops._spp_layout import validate_levels
from app.ops.spp import DEFAULT_LEVELS, _check_features, _check_regions


def roi_spp_reference(
    features: Tensor, regions: Tensor, levels: Sequence[int] = DEFAULT_LEVELS
) -> Tensor:
    """:func:`app.ops.spp.roi_spp` written out bin by bin (docs/model.md §2).

    Same arguments, validation (the op's own checks) and result as ``roi_spp``:
    ``features (Tensor[B, C, H, W])``, ``regions (LongTensor[K, 5])`` rows of
    ``(batch_idx, left, top, right, bottom)`` inclusive cells; returns
    ``Tensor[K, C * sum(n * n)]``.
    """
    _check_features(features)
    values = validate_levels(levels)
    regions = _check_regions(features, regions)
    channels = features.shape[1]
    rows = []
    for batch_idx, left, top, right, bottom in regions.tolist():
        h = bottom - top + 1
        w = right - left + 1
        parts = []
        for n in values:
            pooled = features.new_empty((channels, n, n))
            for i in range(n):
                row_start = top + (i * h) // n  # floor(i*h/n)
                row_end = top + ((i + 1) * h + n - 1) // n  # ceil((i+1)*h/n), exclusive
                for j in range(n):
                    col_start = left + (j * w) // n
                    col_end = left + ((j + 1) * w + n - 1) // n
                    cell = features[batch_idx, :, row_start:row_end, col_start:col_end]
                    pooled[:, i, j] = cell.amax(dim=(1, 2))  # [C]
            parts.append(pooled.flatten())  # channel-major, then row, then column
        rows.append(torch.cat(parts))
    if not rows:
        return features.new_empty((0, channels * sum(n * n for n in values)))
    return torch.stack(rows)
