"""Plain-torch ``roi_spp``: the fallback for any device, NaN-containing maps and autograd.

Only the levels that no finer level covers (the 6 x 6 level for (1, 2, 3, 6)) are pooled from
the map, one ``adaptive_max_pool2d`` per window; the coarser levels are then derived for all
windows at once as block maxima of the finer bins (see ``_spp_layout``). ``adaptive_max_pool2d``
and ``amax`` both propagate NaN, so this path matches ``roi_spp_reference`` bit for bit on any
input, and it is differentiable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from app.ops._spp_layout import PyramidLayout

__all__ = ["roi_spp_torch"]


def roi_spp_torch(features: Tensor, regions: Tensor, layout: PyramidLayout) -> Tensor:
    """Pool ``regions`` of ``features`` into the SPEC section 2 layout.

    Args:
        features (Tensor[B, C, H, W]): feature maps.
        regions (LongTensor[K, 5]): validated ``(batch_idx, left, top, right, bottom)``, K >= 1.
        layout: the pyramid (``pyramid_layout(levels)``).

    Returns:
        Tensor[K, C * layout.total_bins] of ``features.dtype``.
    """
    num_windows = regions.shape[0]
    channels = features.shape[1]
    windows = regions.tolist()
    pooled: dict[int, Tensor] = {}  # level index -> [K, C, n, n]
    for index in layout.order:
        n = layout.levels[index]
        source = layout.source[index]
        if source == -1:
            pooled[index] = torch.stack(
                [
                    F.adaptive_max_pool2d(features[b, :, top : bottom + 1, left : right + 1], n)
                    for b, left, top, right, bottom in windows
                ]
            )
        else:
            m = layout.levels[source]
            ratio = m // n
            finer = pooled[source].reshape(num_windows, channels, n, ratio, n, ratio)
            pooled[index] = finer.amax(dim=(3, 5))  # [K, C, n, n]
    return torch.cat([pooled[index].flatten(1) for index in range(len(layout.levels))], dim=1)
