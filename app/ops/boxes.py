"""Box maths: image scales (docs/model.md §4) and box-regression coding (docs/model.md §6).

Boxes are float ``[x1, y1, x2, y2]`` pixels, 0-based, ``x1 <= x2`` (docs/model.md, "Conventions");
widths are ``x2 - x1`` (no VOC "+1").
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "BBOX_DELTA_CLAMP",
    "TARGET_WINDOW_AREA",
    "ResizePlan",
    "choose_scale_by_expected_side",
    "choose_scale_per_window",
    "clip_boxes",
    "decode_boxes",
    "encode_boxes",
    "inclusive_to_exclusive",
    "resize_plan",
    "scaled_size",
]

#: The scaled window area each window's scale choice aims at (224 x 224 pixels, docs/model.md §4).
TARGET_WINDOW_AREA = 224 * 224
#: Largest log-size delta applied when decoding (as in detectron2): exp() stays below 1000/16.
BBOX_DELTA_CLAMP = math.log(1000.0 / 16)


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected {name} to be a positive integer, got {value!r}")
    try:
        checked = operator.index(value)
    except TypeError:
        raise ValueError(f"expected {name} to be a positive integer, got {value!r}") from None
    if checked < 1:
        raise ValueError(f"expected {name} to be a positive integer, got {value!r}")
    return checked


def _round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


@dataclass(frozen=True)
class ResizePlan:
    """How an image is resized to one scale (docs/model.md §4).

    Attributes:
        height, width: the resized size in pixels.
        factor_y, factor_x: ``height / original height`` and ``width / original width``: multiply
            original y and x pixel coordinates by these to land in the resized image (they differ
            slightly because both sides are rounded).
        capped: whether ``max_long_side`` made the shorter side smaller than the scale.
    """

    height: int
    width: int
    factor_y: float
    factor_x: float
    capped: bool


def resize_plan(height: int, width: int, scale: int, max_long_side: int) -> ResizePlan:
    """Plan the resize of a ``height x width`` image to ``scale`` (docs/model.md §4).

    The shorter side becomes ``scale`` and the longer ``round(scale * long / short)`` (halves
    round up). When that longer side exceeds ``max_long_side``, the longer side becomes
    ``max_long_side`` and the shorter ``round(short * max_long_side / long)`` instead (at least 1).
    """
    height = _positive_int("height", height)
    width = _positive_int("width", width)
    scale = _positive_int("scale", scale)
    max_long_side = _positive_int("max_long_side", max_long_side)
    short, long = min(height, width), max(height, width)
    new_short = scale
    new_long = _round_half_up(scale * long / short)
    capped = new_long > max_long_side
    if capped:
        new_long = max_long_side
        new_short = max(1, _round_half_up(short * max_long_side / long))
    new_h, new_w = (new_short, new_long) if height <= width else (new_long, new_short)
    return ResizePlan(new_h, new_w, new_h / height, new_w / width, capped)


def scaled_size(height: int, width: int, scale: int, max_long_side: int) -> tuple[int, int]:
    """``(new_h, new_w)`` of an image resized to ``scale`` (see :func:`resize_plan`).

    >>> scaled_size(480, 640, 688, 2000)
    (688, 917)
    """
    plan = resize_plan(height, width, scale, max_long_side)
    return plan.height, plan.width


def longer_side_share(box: Sequence[float], height: int, width: int) -> float:
    """The longer side of ``box`` ``(x1, y1, x2, y2)`` (inclusive pixels) over the shorter side
    of its ``height x width`` image: how much of the image an object fills.

    >>> longer_side_share((10, 10, 49, 29), 200, 300)
    0.2
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    return (max(x2 - x1, y2 - y1) + 1.0) / min(height, width)


def _check_boxes(name: str, boxes: Tensor) -> None:
    if not isinstance(boxes, Tensor):
        raise ValueError(f"expected {name} to be a Tensor, got {type(boxes).__name__}")
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"expected {name} of shape [K, 4], got {tuple(boxes.shape)}")
    if not boxes.dtype.is_floating_point:
        raise ValueError(f"expected floating {name}, got {boxes.dtype}")


def _check_scale_choice(
    boxes: Tensor, scales: Sequence[int], short_side: int
) -> tuple[list[int], int]:
    """The inputs of either per-window scale choice, checked: floating ``boxes`` (Tensor[K, 4]),
    at least one positive integer scale, a positive ``short_side``. Returns ``(scales,
    short_side)`` as ints."""
    _check_boxes("boxes", boxes)
    values = [_positive_int("scale", s) for s in scales]
    if not values:
        raise ValueError("expected at least one scale")
    return values, _positive_int("short_side", short_side)


def _window_areas(boxes: Tensor, inclusive: bool) -> Tensor:
    """``(x2 - x1) (y2 - y1)``, or with ``inclusive`` ``(x2 - x1 + 1) (y2 - y1 + 1)``, float64."""
    coords = boxes.to(torch.float64)
    widths = coords[:, 2] - coords[:, 0]
    heights = coords[:, 3] - coords[:, 1]
    if inclusive:
        return (widths + 1.0) * (heights + 1.0)
    return widths * heights


def choose_scale_per_window(
    boxes: Tensor,
    scales: Sequence[int],
    short_side: int,
    *,
    target_side: float = 224.0,
    inclusive: bool = False,
) -> Tensor:
    """Pick, per window, the scale whose scaled area is closest to 224 * 224 (docs/model.md §4).

    The window ``(x1, y1, x2, y2)`` of an image with shorter side ``m`` has area
    ``(w * s / m) * (h * s / m)`` at scale ``s`` (``w = x2 - x1``, ``h = y2 - y1``). The distances
    are compared as ``|w * h * s^2 - 224^2 * m^2|`` in float64, which is exact for integer boxes,
    so exact ties are found; a tie goes to the smaller scale.

    Args:
        boxes (Tensor[K, 4]): windows in original-image pixels.
        scales: candidate shorter-side lengths (any order).
        short_side: ``m``, the shorter side of the original image in pixels.
        target_side: the side (resized pixels) of the square the areas are compared with.
        inclusive: areas with pixel-set widths ``w = x2 - x1 + 1`` (and heights likewise).

    Returns:
        LongTensor[K] on ``boxes.device``: indices into ``scales``.
    """
    values, short_side = _check_scale_choice(boxes, scales, short_side)
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    area = _window_areas(boxes, inclusive)  # [K] original pixels
    ascending = sorted(range(len(values)), key=lambda index: (values[index], index))
    squares = torch.tensor(
        [float(values[i]) ** 2 for i in ascending], dtype=torch.float64, device=boxes.device
    )
    target = float(target_side) ** 2 * float(short_side) ** 2
    distance = (area[:, None] * squares[None, :] - target).abs()  # [K, S], scales ascending
    best = distance.argmin(dim=1)  # first minimum: the smaller scale on a tie
    return torch.tensor(ascending, dtype=torch.int64, device=boxes.device)[best]


def choose_scale_by_expected_side(
    boxes: Tensor,
    scales: Sequence[int],
    short_side: int,
    *,
    target_side: float,
    inclusive: bool = True,
) -> Tensor:
    """Pick, per window, the scale closest to its expected scale (the SPP_net release's rule).

    ``spm_expected_scale.m``: ``e = round(target_side * m / sqrt(area))`` with MATLAB's round
    (halves up, exactly) and ``area = (x2 - x1 + 1) (y2 - y1 + 1)`` (``inclusive``, the
    release) or ``(x2 - x1) (y2 - y1)``; then ``spp_features_convX_to_poolX.m``: the scale with
    the least ``|s - e|``, the first listed on a tie. In float64, in MATLAB's order of
    operations. A window of zero area (possible only without ``inclusive``) expects an infinite
    scale and, as with MATLAB's ``min`` over infinite distances, takes the first listed.

    Args:
        boxes (Tensor[K, 4]): windows in original-image pixels.
        scales: candidate shorter-side lengths, in their listed order.
        short_side: ``m``, the shorter side of the original image in pixels.
        target_side: side of the square window (resized pixels) a scale should make the window
            (the release's ``sz_conv_standard * step_standard`` = 208).
        inclusive: pixel-set areas (the release), else ``(x2 - x1) (y2 - y1)``.

    Returns:
        LongTensor[K] on ``boxes.device``: indices into ``scales``.
    """
    values, short_side = _check_scale_choice(boxes, scales, short_side)
    if not math.isfinite(target_side) or target_side <= 0:
        raise ValueError(f"expected a positive target_side, got {target_side!r}")
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    area = _window_areas(boxes, inclusive)  # [K]
    expected = float(target_side) * float(short_side) / torch.sqrt(area)  # [K], may be inf
    floor = torch.floor(expected)
    expected = torch.where(expected - floor >= 0.5, floor + 1.0, floor)  # MATLAB round, x >= 0
    candidates = torch.tensor(values, dtype=torch.float64, device=boxes.device)
    distance = (candidates[None, :] - expected[:, None]).abs()  # [K, S], listed order
    return distance.argmin(dim=1)  # the first minimum: the first listed on a tie


def _centres_and_sizes(boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    return boxes[:, 0] + 0.5 * widths, boxes[:, 1] + 0.5 * heights, widths, heights


def encode_boxes(gt: Tensor, proposals: Tensor) -> Tensor:
    """Regression targets of ``gt`` relative to ``proposals`` (docs/model.md §6, no "+1").

    ``tx = (gx - px) / pw``, ``ty = (gy - py) / ph``, ``tw = log(gw / pw)``, ``th = log(gh / ph)``
    with centres ``x = x1 + w / 2`` and sizes ``w = x2 - x1``.

    Args:
        gt (Tensor[K, 4]): target boxes, positive widths and heights.
        proposals (Tensor[K, 4]): reference boxes, positive widths and heights.

    Returns:
        Tensor[K, 4]: ``(tx, ty, tw, th)`` in the promoted floating dtype of the inputs.
    """
    _check_boxes("gt", gt)
    _check_boxes("proposals", proposals)
    if gt.shape != proposals.shape:
        raise ValueError(
            f"expected gt and proposals of the same shape, got {tuple(gt.shape)} "
            f"and {tuple(proposals.shape)}"
        )
    dtype = torch.promote_types(gt.dtype, proposals.dtype)
    gx, gy, gw, gh = _centres_and_sizes(gt.to(dtype))
    px, py, pw, ph = _centres_and_sizes(proposals.to(dtype))
    if bool((pw <= 0).any() | (ph <= 0).any() | (gw <= 0).any() | (gh <= 0).any()):
        raise ValueError("expected boxes with positive width and height (x2 > x1, y2 > y1)")
    return torch.stack(
        [(gx - px) / pw, (gy - py) / ph, torch.log(gw / pw), torch.log(gh / ph)], dim=1
    )


def decode_boxes(deltas: Tensor, proposals: Tensor) -> Tensor:
    """Apply regression ``deltas`` to ``proposals``: the inverse of :func:`encode_boxes`.

    ``tw`` and ``th`` are clamped to :data:`BBOX_DELTA_CLAMP` before ``exp`` (detectron2's guard
    against overflow), so a decoded box is at most 62.5 times its proposal's size.

    Args:
        deltas (Tensor[K, 4]): ``(tx, ty, tw, th)``.
        proposals (Tensor[K, 4]): reference boxes.

    Returns:
        Tensor[K, 4]: ``(x1, y1, x2, y2)`` in the promoted floating dtype of the inputs.
    """
    _check_boxes("deltas", deltas)
    _check_boxes("proposals", proposals)
    if deltas.shape != proposals.shape:
        raise ValueError(
            f"expected deltas and proposals of the same shape, got {tuple(deltas.shape)} "
            f"and {tuple(proposals.shape)}"
        )
    dtype = torch.promote_types(deltas.dtype, proposals.dtype)
    deltas = deltas.to(dtype)
    px, py, pw, ph = _centres_and_sizes(proposals.to(dtype))
    dx, dy, dw, dh = deltas.unbind(1)
    cx = px + dx * pw
    cy = py + dy * ph
    half_w = 0.5 * pw * torch.exp(dw.clamp(max=BBOX_DELTA_CLAMP))
    half_h = 0.5 * ph * torch.exp(dh.clamp(max=BBOX_DELTA_CLAMP))
    return torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=1)


def clip_boxes(boxes: Tensor, image_size: tuple[int, int]) -> Tensor:
    """Clip boxes to the pixels of an image: x to ``[0, W - 1]``, y to ``[0, H - 1]``.

    Pixel coordinates are 0-based, so ``W - 1`` is the last column (unlike
    ``torchvision.ops.clip_boxes_to_image``, which clips to ``W``).

    Args:
        boxes (Tensor[K, 4]): boxes in pixels.
        image_size: ``(H, W)`` of the image.

    Returns:
        Tensor[K, 4]: a clipped copy.
    """
    _check_boxes("boxes", boxes)
    height = _positive_int("image height", image_size[0])
    width = _positive_int("image width", image_size[1])
    clipped = boxes.clone()
    clipped[:, 0::2] = clipped[:, 0::2].clamp(0, width - 1)
    clipped[:, 1::2] = clipped[:, 1::2].clamp(0, height - 1)
    return clipped


def inclusive_to_exclusive(boxes: Tensor) -> Tensor:
    """Boxes with inclusive pixel extents as corner boxes: ``(x1, y1, x2 + 1, y2 + 1)``.

    Measured by ``torchvision.ops`` (widths ``x2 - x1``), the result has the pixel-set widths
    ``x2 - x1 + 1`` of the VOC convention, and overlaps ``min(x2) - max(x1) + 1`` clamped at 0:
    NMS on it is NMS with the "+1" areas (the SPP_net release's ``nms_multiclass_mex.cpp``).

    Args:
        boxes (Tensor[K, 4]): ``(x1, y1, x2, y2)`` inclusive pixels.

    Returns:
        Tensor[K, 4]: a new tensor of the same dtype.
    """
    _check_boxes("boxes", boxes)
    shift = torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=boxes.dtype, device=boxes.device)
    return boxes + shift
