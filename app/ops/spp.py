"""Spatial pyramid pooling (docs/model.md §§2 and 3): the public API.

* :func:`spatial_pyramid_pool` pools a whole feature map (classification; differentiable).
* :func:`project_windows` maps image windows to inclusive conv5 cells (paper appendix);
  :func:`project_windows_offset` does it by the SPP_net release's rule.
* :func:`roi_spp` pools many windows of many maps at once (detection). It dispatches on the
  device: CUDA -> one Triton kernel launch (``_spp_triton``), CPU -> a compiled numba loop
  (``_spp_cpu``), anything else (or no numba, NaNs in the map, or a CUDA map that needs
  gradients) -> a plain torch path (``_spp_torch``). A CPU map that needs gradients takes
  ``_spp_autograd``'s Function: a compiled loop that also records each max's cell, and a
  backward that adds the output gradient into those cells (ties: the bin's first maximal cell
  in row-major order). Every path gives the same bits as the slow, obvious loop the tests compare
  against (``tests/references/roi_spp.py``).

Bin rule, for a region of ``h x w`` cells at ``(top, left)`` and level ``n``: bin ``(i, j)``
covers rows ``[top + floor(i*h/n), top + ceil((i+1)*h/n))`` and the columns likewise; this is
``adaptive_max_pool2d``'s rule. Output layout: levels concatenated in the given order; inside a
level, channel-major then row then column (``pooled.reshape(C, n, n).flatten()``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from app.ops._spp_layout import PyramidLayout, pyramid_layout, validate_levels

__all__ = [
    "DEFAULT_LEVELS",
    "project_windows",
    "project_windows_offset",
    "roi_spp",
    "spatial_pyramid_pool",
]

logger = logging.getLogger(__name__)

#: The paper's pyramid: 1x1, 2x2, 3x3 and 6x6 bins (50 bins).
DEFAULT_LEVELS: tuple[int, ...] = (1, 2, 3, 6)

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _check_features(features: Tensor) -> None:
    if not isinstance(features, Tensor):
        raise ValueError(f"expected features to be a Tensor, got {type(features).__name__}")
    if features.dim() != 4:
        raise ValueError(f"expected features of shape [B, C, H, W], got {tuple(features.shape)}")
    if features.dtype not in _FLOAT_DTYPES:
        raise ValueError(
            "expected floating features (float16, bfloat16, float32, float64), "
            f"got {features.dtype}"
        )
    batch, channels, height, width = features.shape
    if batch < 1 or channels < 1 or height < 1 or width < 1:
        raise ValueError(
            f"expected a non-empty feature map [B, C, H, W], got {tuple(features.shape)}"
        )


def _check_regions(features: Tensor, regions: Tensor) -> Tensor:
    """Validate ``regions`` against ``features``; return them as contiguous int64 on its device."""
    if not isinstance(regions, Tensor):
        raise ValueError(f"expected regions to be a Tensor, got {type(regions).__name__}")
    if regions.dim() != 2 or regions.shape[1] != 5:
        raise ValueError(
            "expected regions of shape [K, 5] (batch_idx, left, top, right, bottom), "
            f"got {tuple(regions.shape)}"
        )
    if regions.dtype.is_floating_point or regions.dtype.is_complex or regions.dtype == torch.bool:
        raise ValueError(f"expected integer regions (conv5 cells), got {regions.dtype}")
    if regions.device != features.device:
        raise ValueError(
            f"expected regions on the features' device {features.device}, got {regions.device}"
        )
    regions = regions.to(torch.int64).contiguous()
    if regions.shape[0] == 0:
        return regions
    batch, _, height, width = features.shape
    index, left, top, right, bottom = regions.unbind(1)
    problems = {
        f"batch index outside [0, {batch})": (index < 0) | (index >= batch),
        f"left/right outside [0, {width})": (left < 0) | (right >= width),
        f"top/bottom outside [0, {height})": (top < 0) | (bottom >= height),
        "left > right": left > right,
        "top > bottom": top > bottom,
    }
    for message, bad in problems.items():
        if bool(bad.any()):
            row = int(bad.nonzero()[0, 0])
            raise ValueError(
                f"invalid region {row} {regions[row].tolist()}: {message} "
                f"(feature map [B, C, H, W] = {list(features.shape)})"
            )
    return regions


def spatial_pyramid_pool(features: Tensor, levels: Sequence[int] = DEFAULT_LEVELS) -> Tensor:
    """Pyramid-pool whole feature maps (docs/model.md §2; differentiable).

    Args:
        features (Tensor[B, C, H, W]): feature maps (e.g. conv5), any floating dtype.
        levels: bins per side of each pyramid level, in output order.

    Returns:
        Tensor[B, C * sum(n * n)]: per level ``adaptive_max_pool2d(features, n)`` flattened
        channel-major, levels concatenated in the given order. Works for any ``H, W >= 1``
        (bins overlap when ``n`` exceeds the side).
    """
    _check_features(features)
    values = validate_levels(levels)
    pooled = [F.adaptive_max_pool2d(features, n).flatten(1) for n in values]  # [B, C*n*n] each
    return torch.cat(pooled, dim=1)


def _check_windows(boxes: Tensor, feature_size: tuple[int, int]) -> Tensor:
    """Validate windows and a map size for projection; return the windows as float64."""
    if not isinstance(boxes, Tensor):
        raise ValueError(f"expected boxes to be a Tensor, got {type(boxes).__name__}")
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"expected boxes of shape [K, 4], got {tuple(boxes.shape)}")
    if len(feature_size) != 2 or any(
        isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in feature_size
    ):
        raise ValueError(f"expected feature_size (H5, W5) of positive ints, got {feature_size!r}")
    if boxes.dtype.is_complex or boxes.dtype == torch.bool:
        raise ValueError(f"expected real boxes, got {boxes.dtype}")
    coords = boxes.to(torch.float64)
    if coords.shape[0] == 0:
        return coords
    if not bool(torch.isfinite(coords).all()):
        raise ValueError("expected finite box coordinates")
    if bool((coords[:, 2] < coords[:, 0]).any() | (coords[:, 3] < coords[:, 1]).any()):
        raise ValueError("expected boxes with x1 <= x2 and y1 <= y2")
    return coords


def project_windows(boxes: Tensor, feature_size: tuple[int, int], stride: int = 16) -> Tensor:
    """Project image windows onto inclusive feature-map cells (docs/model.md §3, paper appendix).

    For a window ``(x1, y1, x2, y2)`` (pixels, already at the conv5 map's scale):
    ``left = floor(x1 / S) + 1``, ``right = ceil(x2 / S) - 1`` (top/bottom likewise); when
    ``left > right`` both become ``floor((left + right) / 2)``; then left/right are clamped to
    ``[0, W5 - 1]`` and top/bottom to ``[0, H5 - 1]``.

    Args:
        boxes (Tensor[K, 4]): ``(x1, y1, x2, y2)`` pixels, 0-based, ``x1 <= x2``, ``y1 <= y2``.
        feature_size: ``(H5, W5)`` of the feature map.
        stride: total stride ``S`` of the feature map in pixels.

    Returns:
        LongTensor[K, 4]: ``(left, top, right, bottom)`` inclusive cells on ``boxes.device``,
        with ``0 <= left <= right < W5`` and ``0 <= top <= bottom < H5``.
    """
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"expected a positive integer stride, got {stride!r}")
    coords = _check_windows(boxes, feature_size)
    height, width = feature_size
    if coords.shape[0] == 0:
        return torch.empty((0, 4), dtype=torch.int64, device=boxes.device)
    x1, y1, x2, y2 = (coords / stride).unbind(1)
    left = torch.floor(x1).long() + 1
    top = torch.floor(y1).long() + 1
    right = torch.ceil(x2).long() - 1
    bottom = torch.ceil(y2).long() - 1
    mid_x = torch.div(left + right, 2, rounding_mode="floor")
    mid_y = torch.div(top + bottom, 2, rounding_mode="floor")
    collapse_x = left > right
    collapse_y = top > bottom
    left = torch.where(collapse_x, mid_x, left).clamp(0, width - 1)
    right = torch.where(collapse_x, mid_x, right).clamp(0, width - 1)
    top = torch.where(collapse_y, mid_y, top).clamp(0, height - 1)
    bottom = torch.where(collapse_y, mid_y, bottom).clamp(0, height - 1)
    return torch.stack([left, top, right, bottom], dim=1)


def project_windows_offset(
    boxes: Tensor, feature_size: tuple[int, int], *, offset0: float, offset: float, step: float
) -> Tensor:
    """Project windows onto inclusive feature-map cells by the SPP_net release's rule.

    ``spm_pool_caffe_mex.cpp`` on the 1-based box ``(X1, Y1, X2, Y2) = (x1 + 1, ..., y2 + 1)``
    (already at the map's scale): ``left = floor((X1 - offset0 + offset) / step + 0.5) + 1``,
    ``right = ceil((X2 - offset0 - offset) / step - 0.5) + 1`` (top/bottom likewise); when
    ``left > right`` both become ``(left + right) / 2`` truncated toward zero (C integer
    division); then clamped to ``[1, W5]`` (``[1, H5]``) and returned 0-based. In float64, in the
    C++'s order of operations.

    Args:
        boxes (Tensor[K, 4]): ``(x1, y1, x2, y2)`` pixels, 0-based, ``x1 <= x2``, ``y1 <= y2``.
        feature_size: ``(H5, W5)`` of the feature map.
        offset0: image position (1-based pixels) of the first cell's reference point.
        offset: pixels the window shrinks by on each side.
        step: pixels per cell.

    Returns:
        LongTensor[K, 4]: ``(left, top, right, bottom)`` inclusive 0-based cells on
        ``boxes.device``, with ``0 <= left <= right < W5`` and ``0 <= top <= bottom < H5``.
    """
    if not all(math.isfinite(v) for v in (offset0, offset, step)) or step <= 0:
        raise ValueError(
            f"expected finite offset0, offset and a positive step, got {(offset0, offset, step)}"
        )
    coords = _check_windows(boxes, feature_size)
    height, width = feature_size
    if coords.shape[0] == 0:
        return torch.empty((0, 4), dtype=torch.int64, device=boxes.device)
    x1, y1, x2, y2 = (coords + 1.0).unbind(1)  # 1-based

    def low(v: Tensor) -> Tensor:
        return torch.floor((v - offset0 + offset) / step + 0.5).long() + 1

    def high(v: Tensor) -> Tensor:
        return torch.ceil((v - offset0 - offset) / step - 0.5).long() + 1

    left, top, right, bottom = low(x1), low(y1), high(x2), high(y2)
    mid_x = torch.div(left + right, 2, rounding_mode="trunc")
    mid_y = torch.div(top + bottom, 2, rounding_mode="trunc")
    collapse_x = left > right
    collapse_y = top > bottom
    left = torch.where(collapse_x, mid_x, left).clamp(1, width) - 1
    right = torch.where(collapse_x, mid_x, right).clamp(1, width) - 1
    top = torch.where(collapse_y, mid_y, top).clamp(1, height) - 1
    bottom = torch.where(collapse_y, mid_y, bottom).clamp(1, height) - 1
    return torch.stack([left, top, right, bottom], dim=1)


def _check_out(out: Tensor, features: Tensor, shape: tuple[int, int]) -> None:
    """Validate a caller's output buffer for :func:`roi_spp` (raise ``ValueError``)."""
    if not isinstance(out, Tensor):
        raise ValueError(f"expected out to be a Tensor, got {type(out).__name__}")
    if tuple(out.shape) != shape:
        raise ValueError(f"expected out of shape {list(shape)}, got {list(out.shape)}")
    if out.dtype != features.dtype:
        raise ValueError(f"expected out of the features' dtype {features.dtype}, got {out.dtype}")
    if out.device != features.device:
        raise ValueError(
            f"expected out on the features' device {features.device}, got {out.device}"
        )
    if not out.is_contiguous():
        raise ValueError("expected a contiguous out (a row slice out[:K] of a bigger buffer is)")
    if out.requires_grad or (features.requires_grad and torch.is_grad_enabled()):
        raise ValueError("out= is not differentiable: pass no out when features require grad")
    storage = out.untyped_storage().data_ptr()
    if storage != 0 and storage == features.untyped_storage().data_ptr():
        raise ValueError("expected out not to share memory with features")


def roi_spp(
    features: Tensor,
    regions: Tensor,
    levels: Sequence[int] = DEFAULT_LEVELS,
    *,
    out: Tensor | None = None,
) -> Tensor:
    """Pyramid-pool many rectangular regions of a batch of feature maps (docs/model.md §2).

    Exact: every path returns the same bits as the bin-by-bin loop of
    ``tests/references/roi_spp.py`` (max pooling does no arithmetic). When ``features`` requires
    grad (and grad mode is on) the result is differentiable: on the CPU (with numba) through
    ``_spp_autograd.RoISppFunction``, whose backward sends each output's gradient to its bin's
    first maximal cell in row-major order; elsewhere through autograd of the plain torch path.

    Args:
        features (Tensor[B, C, H, W]): float16, bfloat16, float32 or float64 maps.
        regions (LongTensor[K, 5]): rows ``(batch_idx, left, top, right, bottom)``, inclusive
            cells, on the same device as ``features`` (any integer dtype).
        levels: bins per side of each pyramid level, in output order.
        out (Tensor[K, C * sum(n * n)] | None): where to write the result: contiguous, of
            ``features.dtype``, on its device, not requiring grad, not sharing memory with
            ``features``. A caller that pools repeatedly can pass the same buffer (or a row
            slice ``buffer[:K]`` of one sized for its largest K) and so skip allocating and
            first-touching a large output on every call (100 MiB for 2000 windows of a
            256-channel map). The CPU's compiled path writes into it directly; the other paths
            compute the result and copy it in.

    Returns:
        Tensor[K, C * sum(n * n)] of ``features.dtype`` on its device (``out`` itself when
        given); row ``k`` is ``concat over levels n of pool_n(region_k).reshape(C, n, n)
        .flatten()``. ``K = 0`` gives an empty ``[0, C * sum(n * n)]`` tensor.

    Raises:
        ValueError: bad shapes or dtypes, non-positive levels, a region outside its map, or an
            ``out`` that does not fit (shape, dtype, device, layout, grad, shared memory).
    """
    _check_features(features)
    layout = pyramid_layout(levels)
    regions = _check_regions(features, regions)
    shape = (regions.shape[0], features.shape[1] * layout.total_bins)
    if out is not None:
        _check_out(out, features, shape)
    if regions.shape[0] == 0:
        return features.new_empty(shape) if out is None else out
    needs_grad = features.requires_grad and torch.is_grad_enabled()
    if features.device.type == "cpu":
        from app.ops import _spp_cpu

        if needs_grad and _spp_cpu.available():  # out is None: _check_out refuses it with grad
            from app.ops._spp_autograd import RoISppFunction

            pooled_grad: Tensor = RoISppFunction.apply(features, regions, layout)
            return pooled_grad
        if not needs_grad and _spp_cpu.available():
            pooled = _spp_cpu.roi_spp_cpu(features, regions, layout, out)
            if pooled is not None:  # None: the maps hold NaN, which must propagate like amax
                return pooled
    result = _roi_spp_other_paths(features, regions, layout)
    return result if out is None else out.copy_(result)


def _roi_spp_other_paths(features: Tensor, regions: Tensor, layout: PyramidLayout) -> Tensor:
    """:func:`roi_spp` off the CPU's compiled path: Triton on CUDA, else the torch path."""
    if features.is_cuda and not (features.requires_grad and torch.is_grad_enabled()):
        from app.ops import _spp_triton

        if _spp_triton.available():
            return _spp_triton.roi_spp_triton(features, regions, layout)
    from app.ops._spp_torch import roi_spp_torch

    return roi_spp_torch(features, regions, layout)
