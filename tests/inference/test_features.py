"""Window features against a slow reference: each window cut out of its scale's conv5 map and
pooled whole; conv5 computed once per used scale; empty input; stage timings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from inference_inputs import random_image

from app.inference.detector import Detector
from app.inference.features import (
    Runtime,
    choose_scales,
    conv5_at_scale,
    pooled_windows,
    resolve_device,
    window_cells,
)
from app.model.config import WindowConfig
from app.ops.boxes import choose_scale_per_window
from app.ops.spp import project_windows, spatial_pyramid_pool

SCALES = (64, 96, 128, 160, 224)


def _windows(height: int = 120, width: int = 160) -> torch.Tensor:
    """Windows from 1 px to the whole image, on the border and inside: every scale is chosen."""
    return torch.tensor(
        [
            [0, 0, width - 1, height - 1],
            [0, 0, 0, 0],
            [width - 1, height - 1, width - 1, height - 1],
            [5, 7, 20, 30],
            [10, 10, 90, 70],
            [40, 20, 150, 119],
            [100, 50, 110, 58],
            [2, 60, 60, 118],
        ],
        dtype=torch.float32,
    )


def reference(
    runtime: Runtime, image: np.ndarray, windows: torch.Tensor, scales: tuple[int, ...] = SCALES
) -> torch.Tensor:
    """One window at a time: its scale, conv5 at that scale, its cells cut out and pooled."""
    height, width = image.shape[:2]
    choice = choose_scale_per_window(windows, scales, min(height, width))
    levels = runtime.model.manifest.model.levels
    rows = []
    for window, index in zip(windows, choice.tolist(), strict=True):
        conv5, fx, fy = conv5_at_scale(runtime, image, scales[index])
        cells = project_windows(window[None] * torch.tensor([fx, fy, fx, fy]), conv5.shape[-2:])
        left, top, right, bottom = cells[0].tolist()
        region = conv5[:, :, top : bottom + 1, left : right + 1]
        rows.append(spatial_pyramid_pool(region, levels)[0])
    return torch.stack(rows)


@pytest.mark.parametrize("seed", [0, 1])
def test_pooled_windows_match_the_window_by_window_reference(detector: Detector, seed: int) -> None:
    image, windows = random_image(seed), _windows()
    pooled, used = pooled_windows(detector.runtime, image, windows, SCALES)
    assert pooled.shape == (len(windows), detector.model.manifest.model.spp_dim)
    assert pooled.dtype == torch.float32
    torch.testing.assert_close(pooled, reference(detector.runtime, image, windows))
    choice = choose_scale_per_window(windows, SCALES, 120)
    assert used == [SCALES[i] for i in sorted(set(choice.tolist()))]
    assert len(used) >= 2, "the windows are meant to pick several scales"


def test_pooled_windows_at_one_scale_match_the_reference(detector: Detector) -> None:
    """One used scale: every window is pooled straight into the returned tensor (``out=``)."""
    image, windows = random_image(5), _windows()
    pooled, used = pooled_windows(detector.runtime, image, windows, (96,))
    assert used == [96]
    assert pooled.shape == (len(windows), detector.model.manifest.model.spp_dim)
    torch.testing.assert_close(pooled, reference(detector.runtime, image, windows, (96,)))


def test_conv5_runs_once_per_used_scale(detector: Detector) -> None:
    image, windows = random_image(2), _windows()
    calls: list[int] = []

    def counting_conv5(img: np.ndarray, scale: int) -> tuple[torch.Tensor, float, float]:
        calls.append(scale)
        return conv5_at_scale(detector.runtime, img, scale)

    _, used = pooled_windows(detector.runtime, image, windows, SCALES, conv5_fn=counting_conv5)
    assert calls == used


def test_no_windows_give_an_empty_result_and_no_conv5(detector: Detector) -> None:
    def never(img: np.ndarray, scale: int) -> tuple[torch.Tensor, float, float]:
        raise AssertionError("conv5 computed for no window")

    empty = torch.zeros((0, 4))
    pooled, used = pooled_windows(detector.runtime, random_image(3), empty, SCALES, conv5_fn=never)
    assert pooled.shape == (0, detector.model.manifest.model.spp_dim)
    assert pooled.dtype == torch.float32 and used == []


def test_stage_times_go_to_the_callers_dict(detector: Detector) -> None:
    timings: dict[str, float] = {}
    pooled_windows(detector.runtime, random_image(4), _windows(), (96,), timings=timings)
    assert set(timings) == {"resize", "conv5", "pooling"}
    assert all(ms >= 0.0 for ms in timings.values())
    cached: dict[str, float] = {}

    def from_cache(img: np.ndarray, scale: int) -> tuple[torch.Tensor, float, float]:
        return conv5_at_scale(detector.runtime, img, scale)

    pooled_windows(detector.runtime, random_image(4), _windows(), (96,), conv5_fn=from_cache,
                   timings=cached)  # fmt: skip
    assert set(cached) == {"pooling"}, "conv5 from elsewhere is not timed as this call's"


def test_runtime_checks_precision_and_resolves_the_device(detector: Detector) -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(None).type == expected and resolve_device("auto").type == expected
    with pytest.raises(ValueError, match="expected precision"):
        Runtime.on_device(detector.model, "cpu", "int8")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="float16 inference needs a CUDA device"):
        Runtime.on_device(detector.model, "cpu", "float16")


# ---------------------------------------------------------------------------------------------
# WindowConfig: the SPP_net release's rules


RELEASE_WINDOWS = WindowConfig(
    scale_choice="expected_scale",
    target_side=208.0,
    area_extent="inclusive",
    box_scaling="align_corners",
    projection="offset",
    stride=16.0,
    offset0=18.0,
    offset=9.5,
)


def test_window_cells_align_corners_then_offset_projection_by_hand() -> None:
    # A 375 x 500 image at scale 688: (s - 1) / (m - 1) = 687 / 374 for both axes. The window
    # (49, 39, 199, 119) becomes 1-based (91.01, 72.64, 366.54, 219.59) on the resized image:
    # left = floor((91.01 - 8.5) / 16 + 0.5) + 1 = 6, top = floor(64.14 / 16 + 0.5) + 1 = 5,
    # right = ceil((366.54 - 27.5) / 16 - 0.5) + 1 = 22, bottom = ceil(192.09 / 16 - 0.5) + 1 = 13
    boxes = torch.tensor([[49.0, 39.0, 199.0, 119.0]])
    factors = (917 / 500, 688 / 375)  # the resize's own factors are not used by align_corners
    cells = window_cells(RELEASE_WINDOWS, boxes, (375, 500), factors, (42, 56))
    assert cells.tolist() == [[5, 4, 21, 12]]
    # docs/model.md's rules on the same window: x * fx, y * fy, floor(x / 16) + 1,
    # ceil(x / 16) - 1
    spec = window_cells(WindowConfig(), boxes, (375, 500), factors, (43, 58))
    # 49 * 1.834 = 89.9 -> 6; 39 * 1.8347 = 71.6 -> 5; 199 * 1.834 = 364.97 -> 22; 119 * 1.8347
    # = 218.3 -> 13
    assert spec.tolist() == [[6, 5, 22, 13]]


def test_choose_scales_follows_the_manifest_rule() -> None:
    # 0..207 in an image with m = 528: docs/model.md's rule compares 208^2 (exclusive 207^2)
    # areas with 224^2; the release's expects round(208 * 528 / 208) = 528, a tie of 480 and
    # 576 -> 480
    boxes = torch.tensor([[0.0, 0.0, 207.0, 207.0]])
    assert choose_scales(RELEASE_WINDOWS, boxes, (576, 480), 528).tolist() == [0]
    assert choose_scales(WindowConfig(), boxes, (480, 576), 528).tolist() == [1]
    assert choose_scales(WindowConfig(), boxes, (576, 480), 528).tolist() == [0]
