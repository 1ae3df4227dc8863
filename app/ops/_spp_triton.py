"""``roi_spp`` on the GPU: one Triton launch pools every window of every map at every level.

Grid ``(K, total_bins, ceil(C / BLOCK_C))``: program ``(k, q, cb)`` computes bin ``q`` (bins of
all levels numbered in output order) of window ``k`` for a block of ``BLOCK_C`` channels. It
loops over the bin's rows and columns of the channels-last map (each cell a contiguous,
coalesced ``BLOCK_C`` vector), max-reduces with NaN propagation (like ``amax``), and stores
straight into the docs/model.md §2 layout: ``out[k, C * level_offset + c * n * n + i * n + j]``.

Tested for exact equality with ``tests/references/roi_spp.py`` in Triton's interpreter
(``TRITON_INTERPRET=1``, set before this module is imported, with CPU tensors).
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from app.ops._spp_layout import PyramidLayout

__all__ = ["available", "roi_spp_triton"]

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - triton ships with the CUDA build of torch
    triton = None  # type: ignore[assignment]

#: Columns of the per-bin table handed to the kernel: n, i, j, output offset of channel 0
#: (elements), n * n. Passed to the kernel as a constexpr (Triton kernels may only read
#: constexpr globals).
_BIN_FIELDS = 5


def available() -> bool:
    """Whether the Triton kernel can run (triton importable)."""
    return triton is not None


if triton is not None:
    # Triton reads parameter annotations (tl.constexpr), so the kernel's parameters carry none
    # but that one, as is usual for Triton kernels.
    @triton.jit
    def _roi_spp_kernel(  # type: ignore[no-untyped-def]
        feat_ptr,  # [B, H, W, C], contiguous
        regions_ptr,  # [K, 5] int64: batch_idx, left, top, right, bottom
        bins_ptr,  # [total_bins, 5] int64: n, i, j, out offset of channel 0, n * n
        out_ptr,  # [K, out_stride], same dtype as feat
        channels,
        out_stride,
        stride_b,
        stride_h,
        stride_w,
        BIN_FIELDS: tl.constexpr,  # columns of the bin table (_BIN_FIELDS)
        BLOCK_C: tl.constexpr,
    ):
        k = tl.program_id(0)
        q = tl.program_id(1)
        block = tl.program_id(2)
        region = regions_ptr + k.to(tl.int64) * 5
        batch = tl.load(region)
        left = tl.load(region + 1)
        top = tl.load(region + 2)
        h = tl.load(region + 4) - top + 1
        w = tl.load(region + 3) - left + 1
        n = tl.load(bins_ptr + q * BIN_FIELDS)
        i = tl.load(bins_ptr + q * BIN_FIELDS + 1)
        j = tl.load(bins_ptr + q * BIN_FIELDS + 2)
        out_offset = tl.load(bins_ptr + q * BIN_FIELDS + 3)
        nn = tl.load(bins_ptr + q * BIN_FIELDS + 4)
        # All operands are >= 0, so // is floor division; ceil(a / n) = (a + n - 1) // n.
        row_start = top + (i * h) // n
        row_end = top + ((i + 1) * h + n - 1) // n
        col_start = left + (j * w) // n
        col_end = left + ((j + 1) * w + n - 1) // n
        cs = block * BLOCK_C + tl.arange(0, BLOCK_C)
        mask = cs < channels
        base = feat_ptr + batch * stride_b + cs
        acc = tl.load(base + row_start * stride_h + col_start * stride_w, mask=mask)
        for r in range(row_start, row_end):
            for c in range(col_start, col_end):
                value = tl.load(base + r * stride_h + c * stride_w, mask=mask)
                # (max of 16-bit floats comes back as float32; the cast back is exact)
                acc = tl.maximum(acc, value, propagate_nan=tl.PropagateNan.ALL).to(value.dtype)
        tl.store(out_ptr + k.to(tl.int64) * out_stride + out_offset + cs * nn, acc, mask=mask)


@functools.lru_cache(maxsize=32)
def _bin_table(layout: PyramidLayout, channels: int, device: torch.device) -> Tensor:
    """Per bin of all levels, in output order: ``(n, i, j, out offset, n * n)`` (int64)."""
    rows = []
    for n, bin_offset in zip(layout.levels, layout.bin_offsets, strict=True):
        for i in range(n):
            for j in range(n):
                rows.append((n, i, j, channels * bin_offset + i * n + j, n * n))
    return torch.tensor(rows, dtype=torch.int64, device=device)


def roi_spp_triton(features: Tensor, regions: Tensor, layout: PyramidLayout) -> Tensor:
    """Pool ``regions`` of ``features`` into the docs/model.md §2 layout with one kernel launch.

    Args:
        features (Tensor[B, C, H, W]): CUDA maps (CPU maps under ``TRITON_INTERPRET=1``);
            float16, bfloat16, float32 or float64; ``channels_last`` avoids a copy.
        regions (LongTensor[K, 5]): validated ``(batch_idx, left, top, right, bottom)``, K >= 1,
            on the same device.
        layout: the pyramid (``pyramid_layout(levels)``).

    Returns:
        Tensor[K, C * layout.total_bins] of ``features.dtype`` (not attached to autograd).
    """
    if triton is None:
        raise RuntimeError("triton is not installed")
    num_windows = regions.shape[0]
    channels = features.shape[1]
    feat = features.detach().permute(0, 2, 3, 1).contiguous()  # [B, H, W, C]
    out = torch.empty(
        (num_windows, channels * layout.total_bins), dtype=features.dtype, device=features.device
    )
    bins = _bin_table(layout, channels, features.device)
    block_c = min(triton.next_power_of_2(channels), 256)
    grid = (num_windows, layout.total_bins, triton.cdiv(channels, block_c))
    _roi_spp_kernel[grid](
        feat,
        regions.contiguous(),
        bins,
        out,
        channels,
        out.stride(0),
        feat.stride(0),
        feat.stride(1),
        feat.stride(2),
        BIN_FIELDS=_BIN_FIELDS,
        BLOCK_C=block_c,
        num_warps=max(1, min(4, block_c // 64)),
    )
    return out
