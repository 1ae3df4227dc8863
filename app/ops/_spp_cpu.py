"""Fast exact ``roi_spp`` on the CPU: one compiled numba loop over all windows.

How it works:

* the maps are made channels-last (``[B, H, W, C]``), so every cell is a contiguous ``C``-vector
  and the innermost loop (a running max over channels) is vectorised by LLVM;
* per window only the levels no finer level covers are pooled from the map (the 6 x 6 level for
  levels (1, 2, 3, 6)): each bin is a max over its cells, ``(h + 5) * (w + 5)`` cell reads at
  most for the whole level; the coarser levels are block maxima of those bins (``_spp_layout``);
* the bins land in a per-thread ``[bins, C]`` scratch and are written once, transposed, into
  the docs/model.md §2 layout (channel-major inside each level), in the caller's ``out``
  buffer when given (nothing allocated per call) or a new output;
* windows are split into chunks run in parallel (``prange``) on ``torch.get_num_threads()``
  numba threads; each window is pooled by one thread alone, so the bits do not depend on the
  thread count.

float16 and bfloat16 maps are pooled as int16 *order keys* (``bits`` for non-negative values,
``bits ^ 0x7FFF`` for negative ones, so integer order is float order) and the keys are turned
back into bits on the way out: no conversion and half the memory traffic. The caller sends maps
containing NaN elsewhere (the loop assumes ordered values).

For training, :func:`roi_spp_argmax_cpu` runs a second kernel, the same loop that also records
each output's *argmax* (the first maximal cell in row-major order within its bin, NaN counting
as the largest value), and :func:`scatter_grad_cpu` sends an output gradient back to those cells
(parallel over channels, so no two threads add into the same cell and the sums do not depend
on the thread count). ``_spp_autograd`` wraps the pair in an autograd Function.

Nothing is compiled or imported at import time of ``app.ops.spp``: this module is imported on
the first CPU call, and numba compiles (or loads from its on-disk cache) on that call.
"""

from __future__ import annotations

import contextlib
import mmap
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

from app.ops._spp_layout import PyramidLayout

__all__ = ["available", "roi_spp_argmax_cpu", "roi_spp_cpu", "scatter_grad_cpu"]

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


if numba is not None:
    # The argmax kernel (training): same loop as _pool_windows, plus the position of each max.

    @numba.njit(cache=True, nogil=True, inline="always")
    def _argmax_into(acc: Any, arg: Any, row: Any, position: int) -> None:
        # Cells come in row-major order: a later cell wins only if larger, or NaN over a number.
        for c in range(acc.shape[0]):
            value = row[c]
            best = acc[c]
            take = (value > best) | ((value != value) & (best == best))  # no branches: SIMD
            acc[c] = value if take else best
            arg[c] = position if take else arg[c]

    @numba.njit(cache=True, nogil=True, inline="always")
    def _argmax_merge(acc: Any, arg: Any, values: Any, positions: Any) -> None:
        # Finer bins overlap and come in bin order: on equal values the earlier cell wins.
        for c in range(acc.shape[0]):
            value = values[c]
            best = acc[c]
            position = positions[c]
            earlier = position < arg[c]
            nan = value != value
            take = (value > best) | ((value == best) & earlier) | (nan & ((best == best) | earlier))
            acc[c] = value if take else best
            arg[c] = position if take else arg[c]

    @numba.njit(cache=True, nogil=True, inline="always")
    def _argmax_level_from_map(
        feat: Any, b: int, top: int, left: int, h: int, w: int, n: int, acc: Any, arg: Any
    ) -> None:
        # acc/arg: [n*n, C] rows of this level; positions are r * W + c in the map's plane.
        width = feat.shape[2]
        for i in range(n):
            r0 = top + (i * h) // n
            r1 = top + ((i + 1) * h + n - 1) // n
            for j in range(n):
                c0 = left + (j * w) // n
                c1 = left + ((j + 1) * w + n - 1) // n
                a = acc[i * n + j]
                p = arg[i * n + j]
                a[:] = feat[b, r0, c0]
                p[:] = r0 * width + c0
                for r in range(r0, r1):
                    for c in range(c0, c1):
                        _argmax_into(a, p, feat[b, r, c], r * width + c)

    @numba.njit(cache=True, nogil=True, inline="always")
    def _argmax_level_from_finer(
        n: int, m: int, acc: Any, arg: Any, finer: Any, finer_arg: Any
    ) -> None:
        # acc/arg: [n*n, C] of this level; finer/finer_arg: [m*m, C] of level m = ratio * n.
        ratio = m // n
        for i in range(n):
            for j in range(n):
                a = acc[i * n + j]
                p = arg[i * n + j]
                a[:] = finer[(i * ratio) * m + j * ratio]
                p[:] = finer_arg[(i * ratio) * m + j * ratio]
                for ii in range(i * ratio, (i + 1) * ratio):
                    for jj in range(j * ratio, (j + 1) * ratio):
                        _argmax_merge(a, p, finer[ii * m + jj], finer_arg[ii * m + jj])

    @numba.njit(cache=True, nogil=True, inline="always")
    def _write_transposed(bins: Any, block: Any) -> None:  # block[c, q] = bins[q, c]
        for c in range(block.shape[0]):
            for q in range(block.shape[1]):
                block[c, q] = bins[q, c]

    @numba.njit(parallel=True, cache=True, nogil=True)
    def _pool_windows_argmax(
        feat: Any,  # [B, H, W, C] float32/float64
        regions: Any,  # [K, 5] int64
        ns: Any,  # [L] bins per side
        bin_offsets: Any,  # [L] first bin of each level
        order: Any,  # [L] levels in computing order (finest first)
        source: Any,  # [L] -1 or the finer level to derive from
        total_bins: int,
        num_chunks: int,
        out: Any,  # [K, C * total_bins], same dtype as feat
        argmax: Any,  # [K, C * total_bins] int32/int64: r * W + c of each output's cell
    ) -> None:
        num_windows = regions.shape[0]
        channels = feat.shape[3]
        for chunk in numba.prange(num_chunks):
            first = chunk * num_windows // num_chunks
            last = (chunk + 1) * num_windows // num_chunks
            acc = np.empty((total_bins, channels), dtype=feat.dtype)
            arg = np.empty((total_bins, channels), dtype=argmax.dtype)
            for k in range(first, last):
                top = regions[k, 2]
                left = regions[k, 1]
                for t in range(ns.shape[0]):
                    level = order[t]
                    n = ns[level]
                    lo = bin_offsets[level]
                    hi = lo + n * n
                    if source[level] < 0:
                        h = regions[k, 4] - top + 1
                        w = regions[k, 3] - left + 1
                        _argmax_level_from_map(
                            feat, regions[k, 0], top, left, h, w, n, acc[lo:hi], arg[lo:hi]
                        )
                    else:
                        m = ns[source[level]]
                        src = bin_offsets[source[level]]
                        _argmax_level_from_finer(
                            n,
                            m,
                            acc[lo:hi],
                            arg[lo:hi],
                            acc[src : src + m * m],
                            arg[src : src + m * m],
                        )
                for level in range(ns.shape[0]):  # level block [C, n*n] from rows [n*n, C]
                    lo = bin_offsets[level]
                    hi = lo + ns[level] * ns[level]
                    shape = (channels, hi - lo)
                    _write_transposed(
                        acc[lo:hi], out[k, lo * channels : hi * channels].reshape(shape)
                    )
                    _write_transposed(
                        arg[lo:hi], argmax[k, lo * channels : hi * channels].reshape(shape)
                    )

    @numba.njit(parallel=True, cache=True, nogil=True)
    def _scatter_grad(
        grad_out: Any,  # [K, C * total_bins] float32/float64
        argmax: Any,  # [K, C * total_bins] int32/int64
        regions: Any,  # [K, 5] int64
        ns: Any,  # [L] bins per side
        bin_offsets: Any,  # [L] first bin of each level
        grad: Any,  # [B, C, H * W] zeros, same dtype as grad_out; accumulated into
    ) -> None:
        channels = grad.shape[1]
        for c in numba.prange(channels):  # one thread per channel plane: no two add to a cell
            for k in range(regions.shape[0]):
                plane = grad[regions[k, 0], c]
                for level in range(ns.shape[0]):
                    nn = ns[level] * ns[level]
                    start = bin_offsets[level] * channels + c * nn
                    for q in range(start, start + nn):
                        plane[argmax[k, q]] += grad_out[k, q]


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
    """Pool ``regions`` of CPU ``features`` into the docs/model.md §2 layout (exact).

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
    with _numba_threads() as threads:
        _pool_windows(
            feat,
            regions.numpy(),
            *_layout_arrays(layout),
            layout.total_bins,
            min(num_windows, 8 * threads),
            target.numpy(),
        )
    return out


@contextlib.contextmanager
def _numba_threads() -> Iterator[int]:
    """Run one compiled parallel call at a time on torch's thread count; yields that count."""
    threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
    with _call_lock:
        numba.set_num_threads(threads)
        # Chunks are handed out one at a time (not split evenly up front), so a thread the OS
        # holds back on a busy machine does not hold up the whole call.
        previous_chunksize = numba.set_parallel_chunksize(1)
        try:
            yield threads
        finally:
            numba.set_parallel_chunksize(previous_chunksize)


def _layout_arrays(layout: PyramidLayout) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(ns, bin_offsets, order, source)`` of ``layout`` as int64 arrays for the kernels."""
    return (
        np.asarray(layout.levels, dtype=np.int64),
        np.asarray(layout.bin_offsets, dtype=np.int64),
        np.asarray(layout.order, dtype=np.int64),
        np.asarray(layout.source, dtype=np.int64),
    )


def _argmax_dtype(height: int, width: int) -> torch.dtype:
    """int32 positions ``r * W + c`` when the plane allows it (always, in practice), else int64."""
    return torch.int32 if height * width <= torch.iinfo(torch.int32).max else torch.int64


def roi_spp_argmax_cpu(
    features: Tensor, regions: Tensor, layout: PyramidLayout
) -> tuple[Tensor, Tensor]:
    """Pool ``regions`` like :func:`roi_spp_cpu` and record where each output's max is.

    Tie rule: the first maximal cell of the bin in row-major order. NaN counts as larger than
    any number (the first NaN of a bin wins), so NaN propagates like ``amax``; no NaN check.
    float16/bfloat16 maps are pooled in float32 (exact) and the result converted back (exact).

    Args:
        features (Tensor[B, C, H, W]): CPU maps; float16, bfloat16, float32 or float64.
        regions (LongTensor[K, 5]): validated ``(batch_idx, left, top, right, bottom)``, K >= 1.
        layout: the pyramid (``pyramid_layout(levels)``).

    Returns:
        ``(pooled, argmax)``: pooled Tensor[K, C * layout.total_bins] of ``features.dtype``
        (not attached to autograd), same bits as :func:`roi_spp_cpu`; argmax
        IntTensor[K, C * layout.total_bins] (int32, or int64 for planes of 2^31 cells or more),
        the position ``r * W + c`` in the ``H x W`` plane of map ``batch_idx``, channel ``c`` of
        the output, of the cell each output value was taken from.
    """
    channels, height, width = features.shape[1:]
    detached = features.detach()
    if detached.dtype not in (torch.float32, torch.float64):
        detached = detached.float()
    feat = np.ascontiguousarray(detached.numpy().transpose(0, 2, 3, 1))  # [B, H, W, C]
    shape = (regions.shape[0], channels * layout.total_bins)
    pooled = _empty_output(shape, detached.dtype)
    argmax = _empty_output(shape, _argmax_dtype(height, width))
    with _numba_threads() as threads:
        _pool_windows_argmax(
            feat,
            regions.numpy(),
            *_layout_arrays(layout),
            layout.total_bins,
            min(shape[0], 8 * threads),
            pooled.numpy(),
            argmax.numpy(),
        )
    return pooled.to(features.dtype), argmax


def scatter_grad_cpu(
    grad_output: Tensor,
    regions: Tensor,
    argmax: Tensor,
    layout: PyramidLayout,
    feature_shape: tuple[int, int, int, int],
) -> Tensor:
    """The gradient of :func:`roi_spp_argmax_cpu`'s pooled output with respect to the maps.

    Each output's gradient is added to the cell its value came from (windows and bins
    overlap, so cells accumulate). float16/bfloat16 gradients are summed in float32.

    Args:
        grad_output (Tensor[K, C * layout.total_bins]): CPU gradient of the pooled output.
        regions (LongTensor[K, 5]): the regions the output was pooled from.
        argmax (IntTensor[K, C * layout.total_bins]): from :func:`roi_spp_argmax_cpu`.
        layout: the pyramid.
        feature_shape: ``(B, C, H, W)`` of the maps.

    Returns:
        Tensor[B, C, H, W] contiguous, of ``grad_output.dtype``.
    """
    batch, channels, height, width = feature_shape
    dtype = grad_output.dtype
    work = dtype if dtype in (torch.float32, torch.float64) else torch.float32
    grad_out = grad_output.to(work).contiguous()
    grad = torch.zeros((batch, channels, height * width), dtype=work)
    with _numba_threads():
        _scatter_grad(
            grad_out.numpy(),
            argmax.numpy(),
            regions.numpy(),
            *_layout_arrays(layout)[:2],
            grad.numpy(),
        )
    return grad.view(feature_shape).to(dtype)
