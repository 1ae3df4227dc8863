"""Plain-torch ``roi_spp``: the fallback for any device, NaN-containing maps and autograd.

Vectorised over windows with a 2-D sparse table (range maximum): ``T[a][b][y, x]`` is the max
of the ``2^a x 2^b`` cells starting at ``(y, x)``, so any bin of height ``L`` and width ``M`` is
the max of four (overlapping) table entries at ``a = floor(log2 L)``, ``b = floor(log2 M)``;
max is idempotent, so the overlap changes nothing. Only the levels that no finer level covers
(the 6 x 6 level for (1, 2, 3, 6)) are read from the tables; coarser levels are block maxima of
the finer bins (see ``_spp_layout``).

``torch.maximum`` and ``amax`` both propagate NaN, so this path matches the reference loop
(``tests/references/roi_spp.py``) bit for bit on any input, and it is differentiable. When the
tables would be too large (a level with bins spanning most of a large map) it pools window by
window instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from app.ops._spp_layout import PyramidLayout

__all__ = ["roi_spp_torch"]

#: Largest sparse table (elements, all ``2^a x 2^b`` levels together) built before falling
#: back to the window-by-window loop.
_MAX_TABLE_ELEMENTS = 1 << 27
#: Gathered elements per chunk of windows: bounds the ``[k, n, n, 4, C]`` intermediate, small
#: enough (16 MiB of float32) for the allocator to reuse it from chunk to chunk.
_MAX_GATHER_ELEMENTS = 1 << 22


def _floor_log2(values: Tensor) -> Tensor:
    """Exact ``floor(log2(v))`` of positive int64 values."""
    result = torch.zeros_like(values)
    shifted = values >> 1
    while bool((shifted > 0).any()):
        result += (shifted > 0).long()
        shifted = shifted >> 1
    return result


def _bin_edges(start: Tensor, size: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """Bin starts and (exclusive) ends ``[K, n]`` along one axis: docs/model.md §2's rule."""
    i = torch.arange(n, device=start.device)
    lo = start[:, None] + torch.div(i[None, :] * size[:, None], n, rounding_mode="floor")
    hi = start[:, None] - torch.div(-(i[None, :] + 1) * size[:, None], n, rounding_mode="floor")
    return lo, hi  # hi = start + ceil((i+1)*size/n)


def _sparse_table(channels_last: Tensor, levels_y: int, levels_x: int) -> Tensor:
    """``[levels_y, levels_x, B, H, W, C]``: entry ``[a, b, :, y, x]`` = max over rows
    ``y .. y + 2^a - 1`` and columns ``x .. x + 2^b - 1`` (where those fit in the map)."""
    height, width = channels_last.shape[1:3]
    rows = [channels_last]
    for a in range(1, levels_y):
        prev, half = rows[-1], 1 << (a - 1)
        merged = torch.maximum(prev[:, : height - half], prev[:, half:])
        rows.append(torch.cat([merged, prev[:, height - half :]], dim=1))
    table = []
    for row_level in rows:
        cols = [row_level]
        for b in range(1, levels_x):
            prev, half = cols[-1], 1 << (b - 1)
            merged = torch.maximum(prev[:, :, : width - half], prev[:, :, half:])
            cols.append(torch.cat([merged, prev[:, :, width - half :]], dim=2))
        table.append(torch.stack(cols))
    return torch.stack(table)


def _pool_level_sparse(features: Tensor, regions: Tensor, n: int) -> Tensor:
    """One pyramid level for all windows by sparse-table lookups: ``[K, C, n, n]``, or an
    empty tensor when the table would exceed :data:`_MAX_TABLE_ELEMENTS`."""
    batch, channels, height, width = features.shape
    index, left, top, right, bottom = regions.unbind(1)
    row_lo, row_hi = _bin_edges(top, bottom - top + 1, n)  # [K, n]
    col_lo, col_hi = _bin_edges(left, right - left + 1, n)
    log_h = _floor_log2(row_hi - row_lo)
    log_w = _floor_log2(col_hi - col_lo)
    levels_y, levels_x = int(log_h.max()) + 1, int(log_w.max()) + 1
    if levels_y * levels_x * features.numel() > _MAX_TABLE_ELEMENTS:
        return features.new_empty(0)
    table = _sparse_table(features.permute(0, 2, 3, 1), levels_y, levels_x)
    flat = table.reshape(-1, channels)  # [levels_y * levels_x * B * H * W, C]
    # Four corners per bin: rows lo and hi - 2^a, columns lo and hi - 2^b.
    rows = torch.stack([row_lo, row_hi - (1 << log_h)], dim=-1)  # [K, n, 2]
    cols = torch.stack([col_lo, col_hi - (1 << log_w)], dim=-1)
    level = log_h[:, :, None] * levels_x + log_w[:, None, :]  # [K, n, n]
    image = (level * batch + index[:, None, None]) * height  # [K, n, n]
    position = (image[..., None, None] + rows[:, :, None, :, None]) * width
    position = position + cols[:, None, :, None, :]  # [K, n(i), n(j), 2, 2]
    position = position.reshape(len(regions), n, n, 4)
    chunk = max(1, _MAX_GATHER_ELEMENTS // (n * n * 4 * channels))
    pooled = [
        flat.index_select(0, part.reshape(-1)).reshape(len(part), n, n, 4, channels).amax(dim=3)
        for part in position.split(chunk)
    ]
    return torch.cat(pooled).permute(0, 3, 1, 2)  # [K, C, n, n]


def _pool_level_loop(features: Tensor, regions: Tensor, n: int) -> Tensor:
    """One pyramid level, window by window (``adaptive_max_pool2d``): ``[K, C, n, n]``."""
    return torch.stack(
        [
            F.adaptive_max_pool2d(features[b, :, top : bottom + 1, left : right + 1], n)
            for b, left, top, right, bottom in regions.tolist()
        ]
    )


def roi_spp_torch(features: Tensor, regions: Tensor, layout: PyramidLayout) -> Tensor:
    """Pool ``regions`` of ``features`` into the docs/model.md §2 layout.

    Args:
        features (Tensor[B, C, H, W]): feature maps on any device.
        regions (LongTensor[K, 5]): validated ``(batch_idx, left, top, right, bottom)``, K >= 1,
            on the same device.
        layout: the pyramid (``pyramid_layout(levels)``).

    Returns:
        Tensor[K, C * layout.total_bins] of ``features.dtype``.
    """
    num_windows = regions.shape[0]
    channels = features.shape[1]
    pooled: dict[int, Tensor] = {}  # level index -> [K, C, n, n]
    for index in layout.order:
        n = layout.levels[index]
        source = layout.source[index]
        if source == -1:
            level = _pool_level_sparse(features, regions, n)
            pooled[index] = level if level.numel() else _pool_level_loop(features, regions, n)
        else:
            ratio = layout.levels[source] // n
            finer = pooled[source].reshape(num_windows, channels, n, ratio, n, ratio)
            pooled[index] = finer.amax(dim=(3, 5))  # [K, C, n, n]
    return torch.cat([pooled[index].flatten(1) for index in range(len(layout.levels))], dim=1)
