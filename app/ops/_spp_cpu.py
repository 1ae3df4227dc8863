"""Fast exact ``roi_spp`` on the CPU: one compiled numba loop over all windows.

How it works:

* the maps are made channels-last (``[B, H, W, C]``), so every cell is a contiguous ``C``-vector
  and the innermost loop (a running max over channels) is vectorised by LLVM;
* per window only the levels no finer level covers are pooled from the map (the 6 x 6 level for
  levels (1, 2, 3, 6)): each bin is a max over its cells, ``(h + 5) * (w + 5)`` cell reads at
  most for the whole level; the coarser levels are block maxima of those bins (``_spp_layout``);
* the bins land in a per-thread ``[bins, C]`` scratch and are written once, transposed, into
  the SPEC layout (channel-major inside each level), in the caller's ``out`` buffer when given
  (nothing allocated per call) or a new output;
* windows are split into chunks run in parallel (``prange``) on ``torch.get_num_threads()``
  numba threads; each window is pooled by one thread alone, so the bits do not depend on the
  thread count.

float16 and bfloat16 maps are pooled as int16 *order keys* (``bits`` for non-negative values,
``bits ^ 0x7FFF`` for negative ones, so integer order is float order) and the keys are turned
back into bits on the way out: no conversion and half the memory traffic. The caller sends maps
containing NaN elsewhere (the loop assumes ordered values).

Nothing is compiled or imported at import time of ``app.ops.spp``: this module is imported on
the first CPU call, and numba compiles (or loads from its on-disk cache) on that call.
"""

from __future__ import annotations

import contextlib
import mmap
import threading
from typing import Any

import numpy as np
import torch
from torch import Tensor

from app.ops._spp_layout import PyramidLayout

__all__ = ["available", "roi_spp_cpu"]

try:
    import numba
    import numba.extending
except ImportError:  # pragma: no cover - numba is a declared dependency
    numba = None  # type: ignore[assignment]

# The workqueue threading layer (numba's last resort) aborts on concurrent parallel calls, and
# on a small machine concurrent calls only oversubscribe the cores: run one pooling at a time.
_call_lock = threading.Lock()
#: Outputs at least this large are allocated by :func:`_empty_output` with huge pages.
_HUGE_PAGE_MIN_BYTES = 8 << 20


def available() -> bool:
    """Whether numba can be used (the compiled path exists)."""
    return numba is not None


def _key_to_bits(value: Any) -> Any:
    """An int16 order key back to float16/bfloat16 bits; float32/float64 values unchanged."""
    raise NotImplementedError("only callable from compiled code")


if numba is not None:
    # Decorating compiles nothing: numba compiles (or loads its cache) on the first call.

    @numba.extending.overload(_key_to_bits, inline="always")
    def _key_to_bits_impl(value: Any) -> Any:
        if isinstance(value, numba.types.Integer):

            def from_key(value: Any) -> Any:
                return value ^ 0x7FFF if value < 0 else value

            return from_key

        def identity(value: Any) -> Any:
            return value

        return identity

    @numba.njit(cache=True, nogil=True, inline="always")
    def _max_into(acc: Any, row: Any) -> None:  # acc[c] = max(acc[c], row[c])
        for c in range(acc.shape[0]):
            value = row[c]
            if value > acc[c]:
                acc[c] = value

    @numba.njit(parallel=True, cache=True, nogil=True)
    def _pool_windows(
        feat: Any,  # [B, H, W, C] float32/float64, or int16 order keys
        regions: Any,  # [K, 5] int64
        ns: Any,  # [L] bins per side
        bin_offsets: Any,  # [L] first bin of each level
        order: Any,  # [L] levels in computing order (finest first)
        source: Any,  # [L] -1 or the finer level to derive from
        total_bins: int,
        num_chunks: int,
        out: Any,  # [K, C * total_bins], same dtype as feat
    ) -> None:
        num_windows = regions.shape[0]
        channels = feat.shape[3]
        num_levels = ns.shape[0]
        for chunk in numba.prange(num_chunks):
            first = chunk * num_windows // num_chunks
            last = (chunk + 1) * num_windows // num_chunks
            acc = np.empty((total_bins, channels), dtype=feat.dtype)
            for k in range(first, last):
                b = regions[k, 0]
                left = regions[k, 1]
                top = regions[k, 2]
                h = regions[k, 4] - top + 1
                w = regions[k, 3] - left + 1
                for t in range(num_levels):
                    level = order[t]
                    n = ns[level]
                    base = bin_offsets[level]
                    src = source[level]
                    if src < 0:
                        for i in range(n):
                            r0 = top + (i * h) // n
                            r1 = top + ((i + 1) * h + n - 1) // n
                            for j in range(n):
                                c0 = left + (j * w) // n
                                c1 = left + ((j + 1) * w + n - 1) // n
                                a = acc[base + i * n + j]
                                a[:] = feat[b, r0, c0]
                                for r in range(r0, r1):
                                    for c in range(c0, c1):
                                        _max_into(a, feat[b, r, c])
                    else:
                        m = ns[src]
                        ratio = m // n
                        src_base = bin_offsets[src]
                        for i in range(n):
                            for j in range(n):
                                a = acc[base + i * n + j]
                                a[:] = acc[src_base + (i * ratio) * m + j * ratio]
                                for ii in range(i * ratio, (i + 1) * ratio):
                                    for jj in range(j * ratio, (j + 1) * ratio):
                                        _max_into(a, acc[src_base + ii * m + jj])
                # Write out transposed: level block [C, n*n] from scratch rows [n*n, C]. Both
                # are indexed by loop counters from 0 (no negative-index wraparound to check).
                row_out = out[k]
                for level in range(num_levels):
                    nn = ns[level] * ns[level]
                    base = bin_offsets[level]
                    bins = acc[base : base + nn]  # [n*n, C]
                    block = row_out[base * channels : (base + nn) * channels].reshape(
                        (channels, nn)
                    )  # [C, n*n]
                    for c in range(channels):
                        for q in range(nn):
                            block[c, q] = _key_to_bits(bins[q, c])


#: ``bits & 0x7FFF`` above this is a NaN, per 16-bit float dtype.
_NAN_ABOVE = {torch.float16: 0x7C00, torch.bfloat16: 0x7F80}


def _channels_last_array(features: Tensor) -> tuple[np.ndarray, bool]:
    """CPU ``features [B, C, H, W]`` -> (contiguous ``[B, H, W, C]`` array for the kernel, has NaN).

    float32/float64 maps are copied as they are; float16/bfloat16 maps become int16 *order keys*
    (``bits`` when the sign bit is clear, ``bits ^ 0x7FFF`` when set), whose integer order is the
    float order. Done in numpy, single-threaded: these are small copies (2.5 MiB for 43 x 58 x
    256 float32), and a 2-thread torch op this small is much slower on a busy 2-core machine.
    """
    detached = features.detach()
    if detached.dtype in _NAN_ABOVE:
        bits = np.ascontiguousarray(detached.view(torch.int16).numpy().transpose(0, 2, 3, 1))
        has_nan = bool(((bits & 0x7FFF) > _NAN_ABOVE[detached.dtype]).any())
        keys = np.where(bits < 0, bits ^ np.int16(0x7FFF), bits)
        return keys, has_nan
    values = np.ascontiguousarray(detached.numpy().transpose(0, 2, 3, 1))
    return values, bool(np.isnan(values.max()))  # max propagates NaN: one pass, no temporary


def _empty_output(shape: tuple[int, int], dtype: torch.dtype) -> Tensor:
    """``torch.empty(shape, dtype)``; large ones in memory advised for transparent huge pages.

    The pooled output is big (2000 windows x 12800 float32 = 100 MiB) and written once, so the
    first-touch page faults of 4 KiB pages cost more than the pooling itself (measured on a
    2-core VM: about 50 ms vs 15 ms for 100 MiB). ``MADV_HUGEPAGE`` is a hint: on systems
    without transparent huge pages this is an ordinary anonymous mapping.
    """
    nbytes = shape[0] * shape[1] * dtype.itemsize
    if nbytes < _HUGE_PAGE_MIN_BYTES or not hasattr(mmap, "MADV_HUGEPAGE"):
        return torch.empty(shape, dtype=dtype)
    buffer = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    with contextlib.suppress(OSError):
        buffer.madvise(mmap.MADV_HUGEPAGE)
    return torch.frombuffer(buffer, dtype=dtype).view(shape)  # the tensor keeps `buffer` alive


def roi_spp_cpu(
    features: Tensor, regions: Tensor, layout: PyramidLayout, out: Tensor | None = None
) -> Tensor | None:
    """Pool ``regions`` of CPU ``features`` into the SPEC section 2 layout (exact).

    Args:
        features (Tensor[B, C, H, W]): CPU maps; float16, bfloat16, float32 or float64.
        regions (LongTensor[K, 5]): validated ``(batch_idx, left, top, right, bottom)``, K >= 1.
        layout: the pyramid (``pyramid_layout(levels)``).
        out (Tensor[K, C * layout.total_bins] | None): validated contiguous CPU tensor of
            ``features.dtype`` to write into; a new one is allocated when ``None``.

    Returns:
        ``out`` (or the new Tensor[K, C * layout.total_bins] of ``features.dtype``, not attached
        to autograd), or ``None`` when the maps hold a NaN: the compiled loop assumes ordered
        values, so such maps must take a NaN-propagating path (``out`` is then left untouched).
    """
    num_windows = regions.shape[0]
    channels = features.shape[1]
    dtype = features.dtype
    feat, has_nan = _channels_last_array(features)
    if has_nan:
        return None
    keys = feat.dtype == np.int16
    if out is None:
        out = _empty_output((num_windows, channels * layout.total_bins), dtype)
    target = out.view(torch.int16) if keys else out  # the kernel writes keys' bits back
    threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
    num_chunks = min(num_windows, 8 * threads)
    with _call_lock:
        numba.set_num_threads(threads)
        # Chunks are handed out one at a time (not split evenly up front), so a thread the OS
        # holds back on a busy machine does not hold up the whole call.
        previous_chunksize = numba.set_parallel_chunksize(1)
        try:
            _pool_windows(
                feat,
                regions.numpy(),
                np.asarray(layout.levels, dtype=np.int64),
                np.asarray(layout.bin_offsets, dtype=np.int64),
                np.asarray(layout.order, dtype=np.int64),
                np.asarray(layout.source, dtype=np.int64),
                layout.total_bins,
                num_chunks,
                target.numpy(),
            )
        finally:
            numba.set_parallel_chunksize(previous_chunksize)
    return out
