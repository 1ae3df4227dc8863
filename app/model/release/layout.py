"""Pooled-vector layouts: fc6 columns for one order of pyramid levels, given another.

The release pools levels in the order of ``spm_divs``; inside a level the vector is
channel-major, then bin row, then bin column (``spm_pool_caffe_mex.cpp``), the same as
``roi_spp``. Only the order of the levels can differ, so fc6 of a release pooled in, say,
(6, 3, 2, 1) order serves ``roi_spp`` with levels (1, 2, 3, 6) once its input columns are
permuted.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from app.model.release.errors import ReleaseFormatError


def level_offsets(levels: Sequence[int], channels: int) -> dict[int, int]:
    """Start of each level in the pooled vector: ``{n: offset}`` (levels must be distinct)."""
    if len(set(levels)) != len(levels):
        raise ReleaseFormatError(f"expected distinct pyramid levels, found {list(levels)}")
    offsets, start = {}, 0
    for n in levels:
        offsets[n] = start
        start += channels * n * n
    return offsets


def pyramid_column_order(
    source_levels: Sequence[int], target_levels: Sequence[int], channels: int
) -> np.ndarray:
    """Indices ``idx`` such that ``x_source[idx] == x_target`` for one window's pooled vector.

    Args:
        source_levels: the level order the vector was pooled in (the release's ``spm_divs``).
        target_levels: the level order wanted (e.g. (1, 2, 3, 6)); the same levels.
        channels: conv5 channels C.

    Returns:
        int64 [C * sum(n * n)]: so ``weight[:, idx]`` is fc6's weight [out, in] for vectors
        pooled in ``target_levels`` order.
    """
    if sorted(source_levels) != sorted(target_levels):
        raise ReleaseFormatError(
            f"expected the same pyramid levels, found {list(source_levels)} and "
            f"{list(target_levels)}"
        )
    source = level_offsets(source_levels, channels)
    parts = [source[n] + np.arange(channels * n * n) for n in target_levels]
    return np.concatenate(parts).astype(np.int64)


def reorder_fc6_columns(
    weight: np.ndarray, source_levels: Sequence[int], target_levels: Sequence[int], channels: int
) -> np.ndarray:
    """fc6's weight [out, C * sum(n * n)] for inputs pooled in ``target_levels`` order."""
    order = pyramid_column_order(source_levels, target_levels, channels)
    if weight.ndim != 2 or weight.shape[1] != order.size:
        raise ReleaseFormatError(
            f"expected fc6 weight [out, {order.size}], found {list(weight.shape)}"
        )
    return np.ascontiguousarray(weight[:, order])
