"""Window features: conv5 once per image and used scale, then pyramid pooling per window.

docs/model.md §§3 and 4: each window picks the scale at which its size is closest to 224 x 224
(single mode: the one scale); per scale that at least one window chose, the image is resized
and conv1..conv5 run once; each window is projected onto that conv5 map and pooled with the
spatial pyramid. The same code serves detection, multi-view classification and training.
How a window picks its scale, moves into the resized image and becomes conv5 cells is the
manifest's :class:`~app.model.config.WindowConfig` (docs/model.md's rules by default, the
SPP_net release's for an imported release).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from app.inference.timing import timed
from app.model.config import WindowConfig
from app.model.preprocess import image_to_tensor, resize_to_scale
from app.model.store import SppModel
from app.ops.boxes import choose_scale_by_expected_side, choose_scale_per_window
from app.ops.spp import project_windows, project_windows_offset, roi_spp

Precision = Literal["float32", "bfloat16", "float16"]
_AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}
#: ``(image, scale) -> (conv5 Tensor[1, C, H5, W5], fx, fy)``;
#: lets training serve conv5 from a cache.
Conv5Fn = Callable[[np.ndarray, int], tuple[Tensor, float, float]]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` or ``"auto"`` -> CUDA when present, else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass(frozen=True)
class Runtime:
    """A loaded model on one device at one precision: what every inference function runs on.

    Immutable, so concurrent calls may share one. ``precision`` other than ``"float32"`` runs
    the convolutions and fc6/fc7 under ``torch.autocast`` in that type; pooling, the SVMs, the
    regressors and NMS stay in float32.
    """

    model: SppModel
    device: torch.device
    precision: Precision = "float32"

    @classmethod
    def on_device(
        cls,
        model: SppModel,
        device: str | torch.device | None = None,
        precision: Precision = "float32",
    ) -> Runtime:
        """Check ``precision`` for ``device`` and move ``model.net`` there, in eval mode.

        Raises:
            ValueError: an unknown precision, or float16 off CUDA.
        """
        resolved = resolve_device(device)
        if precision not in ("float32", *_AUTOCAST_DTYPES):
            raise ValueError(f"expected precision float32, bfloat16 or float16, got {precision!r}")
        if precision == "float16" and resolved.type != "cuda":
            raise ValueError("float16 inference needs a CUDA device; use bfloat16 on a CPU")
        model.net.to(resolved).eval()
        return cls(model, resolved, precision)

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        """Autocast to the reduced precision, or nothing at float32."""
        if self.precision == "float32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_AUTOCAST_DTYPES[self.precision])


@torch.inference_mode()
def conv5_at_scale(
    runtime: Runtime, image: np.ndarray, scale: int, timings: dict[str, float] | None = None
) -> tuple[Tensor, float, float]:
    """Resize ``image`` (RGB uint8 ``[H, W, 3]``) to ``scale`` and run the trunk.

    Stages ``resize`` and ``conv5`` are added to ``timings`` (ms) when given.

    Returns:
        ``(Tensor[1, C, H5, W5], fx, fy)``, the factors mapping original pixels to the resized
        image.
    """
    manifest = runtime.model.manifest
    with timed(timings, "resize", runtime.device):
        resized, fx, fy = resize_to_scale(image, scale, manifest.detection.max_long_side)
        x = image_to_tensor(resized, manifest.preprocess, runtime.device)
    with timed(timings, "conv5", runtime.device), runtime.autocast():
        conv5 = runtime.model.net.trunk(x)
    return conv5, fx, fy


def choose_scales(
    windows: WindowConfig, boxes: Tensor, scales: Sequence[int], short_side: int
) -> Tensor:
    """Per window, the index into ``scales`` that ``windows.scale_choice`` picks (``[N]``)."""
    inclusive = windows.area_extent == "inclusive"
    if windows.scale_choice == "expected_scale":
        return choose_scale_by_expected_side(
            boxes, scales, short_side, target_side=windows.target_side, inclusive=inclusive
        )
    return choose_scale_per_window(
        boxes, scales, short_side, target_side=windows.target_side, inclusive=inclusive
    )


def window_cells(
    windows: WindowConfig,
    boxes: Tensor,
    image_size: tuple[int, int],
    factors: tuple[float, float],
    feature_size: tuple[int, int],
) -> Tensor:
    """Windows of the original image -> inclusive cells of one scale's conv5 map.

    Args:
        windows: the manifest's box scaling and projection rules.
        boxes (Tensor[n, 4]): ``(x1, y1, x2, y2)`` in original pixels.
        image_size: ``(height, width)`` of the original image.
        factors: ``(fx, fy)``, the resized image's width and height over the original's.
        feature_size: ``(H5, W5)`` of the conv5 map.

    Returns:
        LongTensor[n, 4]: ``(left, top, right, bottom)`` 0-based inclusive cells.
    """
    fx, fy = factors
    if windows.box_scaling == "align_corners":
        height, width = image_size
        short = min(height, width)
        resized_short = round((fy if height <= width else fx) * short)
        # float64 and the release's order: (b * (s - 1)) / (m - 1)
        scaled = boxes.to(torch.float64) * float(resized_short - 1) / float(max(short - 1, 1))
    else:
        scaled = boxes * torch.tensor([fx, fy, fx, fy], device=boxes.device)
    if windows.projection == "offset":
        return project_windows_offset(
            scaled,
            feature_size,
            offset0=windows.offset0,
            offset=windows.offset,
            step=windows.stride,
        )
    return project_windows(scaled, feature_size, int(windows.stride))


@torch.inference_mode()
def pooled_windows(
    runtime: Runtime,
    image: np.ndarray,
    boxes: Tensor,
    scales: Sequence[int],
    *,
    conv5_fn: Conv5Fn | None = None,
    timings: dict[str, float] | None = None,
) -> tuple[Tensor, list[int]]:
    """Pyramid-pooled conv5 vectors of ``boxes``, each at the scale it chose (docs/model.md §§3, 4).

    Args:
        image (ndarray[H, W, 3] uint8): RGB image.
        boxes (Tensor[N, 4]): windows ``(x1, y1, x2, y2)`` in the image's pixel frame.
        scales: the scale set (shorter sides, pixels); each window picks one.
        conv5_fn: where conv5 comes from; :func:`conv5_at_scale` by default.
        timings: stage times (ms) are added to it when given: ``pooling``, and ``resize`` and
            ``conv5`` when ``conv5_fn`` is the default.

    Returns:
        ``(Tensor[N, D] float32, scales_used)``: conv5 is computed once per used scale only,
        ``scales_used`` ascending by index into ``scales``.
    """
    height, width = image.shape[:2]
    manifest = runtime.model.manifest
    device = runtime.device
    boxes = boxes.to(device, torch.float32)
    choice = choose_scales(manifest.windows, boxes, scales, min(height, width))  # [N]
    pooled = torch.empty((len(boxes), manifest.model.spp_dim), dtype=torch.float32, device=device)
    used = sorted(set(choice.tolist()))
    for index in used:
        if conv5_fn is None:
            conv5, fx, fy = conv5_at_scale(runtime, image, scales[index], timings)
        else:
            conv5, fx, fy = conv5_fn(image, scales[index])
        with timed(timings, "pooling", device):
            picked = (choice == index).nonzero().squeeze(1)
            feature_size = (int(conv5.shape[-2]), int(conv5.shape[-1]))
            cells = window_cells(
                manifest.windows, boxes[picked], (height, width), (fx, fy), feature_size
            )
            regions = torch.cat([torch.zeros_like(cells[:, :1]), cells], dim=1)  # [n, 5]
            if len(used) == 1 and conv5.dtype == pooled.dtype:
                # Every window, in order, at this scale: pooled straight into this call's own
                # output (no second [N, D] tensor to allocate and copy).
                roi_spp(conv5, regions, manifest.model.levels, out=pooled)
            else:
                pooled[picked] = roi_spp(conv5, regions, manifest.model.levels).float()
    return pooled, [scales[i] for i in used]
