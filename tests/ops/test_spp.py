"""Pyramid pooling and window projection against slow, obvious references.

The rules are docs/model.md §§2 and 3.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from unittest import mock

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from references.roi_spp import roi_spp_reference
from torch import Tensor

from app.ops import _spp_torch
from app.ops._spp_layout import pyramid_layout
from app.ops.spp import (
    project_windows,
    project_windows_offset,
    roi_spp,
    spatial_pyramid_pool,
)

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.gpu,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
        ],
    ),
]
LEVEL_SETS = [(1, 2, 3, 6), (6, 3, 2, 1), (1,), (4, 2, 5, 10, 1), (2, 2), (7,)]


def assert_exact(actual: Tensor, expected: Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=0, atol=0, equal_nan=True)


def pyramid_reference(features: Tensor, levels: Sequence[int]) -> Tensor:
    """Whole-map pyramid pooling written out bin by bin from docs/model.md §2."""
    batch, channels, height, width = features.shape
    parts = []
    for n in levels:
        pooled = features.new_empty((batch, channels, n, n))
        for i in range(n):
            rows = slice((i * height) // n, -((-(i + 1) * height) // n))  # floor .. ceil
            for j in range(n):
                cols = slice((j * width) // n, -((-(j + 1) * width) // n))
                pooled[:, :, i, j] = features[:, :, rows, cols].amax(dim=(2, 3))
        parts.append(pooled.flatten(1))
    return torch.cat(parts, dim=1)


def roi_spp_torch(features: Tensor, regions: Tensor, levels: Sequence[int]) -> Tensor:
    return _spp_torch.roi_spp_torch(features, regions, pyramid_layout(levels))


def roi_spp_torch_loop(features: Tensor, regions: Tensor, levels: Sequence[int]) -> Tensor:
    """The torch fallback's window-by-window branch (taken when a sparse table is too big)."""
    with mock.patch.object(_spp_torch, "_MAX_TABLE_ELEMENTS", 0):
        return roi_spp_torch(features, regions, levels)


#: Every way to run roi_spp: the public dispatch (numba on CPU, Triton on CUDA) and the torch
#: fallback's two branches, called directly.
BACKENDS: dict[str, Callable[[Tensor, Tensor, Sequence[int]], Tensor]] = {
    "dispatch": roi_spp,
    "torch": roi_spp_torch,
    "torch-loop": roi_spp_torch_loop,
}


# ---------------------------------------------------------------------------------------------
# spatial_pyramid_pool


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [(13, 13), (10, 10), (1, 1), (3, 5), (7, 20), (43, 58)])
def test_spatial_pyramid_pool_matches_reference(
    dtype: torch.dtype, size: tuple[int, int], make_map: Callable[..., Tensor]
) -> None:
    features = make_map(2, 5, *size, dtype, seed=sum(size))
    pooled = spatial_pyramid_pool(features)
    assert pooled.shape == (2, 5 * 50)
    assert pooled.dtype == dtype
    assert_exact(pooled, pyramid_reference(features, (1, 2, 3, 6)))


def test_spatial_pyramid_pool_layout_and_levels(make_map: Callable[..., Tensor]) -> None:
    features = make_map(1, 3, 8, 8, torch.float32, seed=0)
    pooled = spatial_pyramid_pool(features, (1, 2))
    assert pooled.shape == (1, 3 * 5)
    assert_exact(pooled[0, :3], features[0].amax(dim=(1, 2)))  # level 1: one max per channel
    level2 = pooled[0, 3:].reshape(3, 2, 2)  # channel-major, then row, then column
    assert_exact(level2[1, 0, 1], features[0, 1, :4, 4:].amax())


def test_spatial_pyramid_pool_uses_the_bin_rule_not_the_papers_win_stride_form() -> None:
    # On a 10 x 10 map at n = 6 the paper's win = ceil(10/6) = 2, stride = floor(10/6) = 1 form
    # puts the last bin on rows/columns 5..6; the bin rule puts it on 8..9.
    features = torch.zeros(1, 1, 10, 10)
    features[0, 0, 9, 9] = 1.0
    pooled = spatial_pyramid_pool(features, (6,)).reshape(6, 6)
    assert pooled[5, 5] == 1.0
    assert pooled.sum() == 1.0


def test_spatial_pyramid_pool_is_differentiable(make_map: Callable[..., Tensor]) -> None:
    features = make_map(2, 4, 9, 11, torch.float32, seed=1).requires_grad_()
    spatial_pyramid_pool(features).sum().backward()
    assert features.grad is not None
    assert features.grad.shape == features.shape
    assert features.grad.sum() == 2 * 4 * 50  # each bin's gradient lands on its one max


@pytest.mark.parametrize(
    ("features", "levels", "message"),
    [
        (torch.zeros(3, 4, 5), (1,), r"\[B, C, H, W\]"),
        (torch.zeros(1, 2, 3, 4, dtype=torch.int32), (1,), "floating"),
        (torch.zeros(1, 2, 0, 4), (1,), "non-empty"),
        (torch.zeros(1, 2, 3, 4), (), "empty"),
        (torch.zeros(1, 2, 3, 4), (0, 1), "positive"),
        (torch.zeros(1, 2, 3, 4), (True,), "positive"),
        (torch.zeros(1, 2, 3, 4), (1.5,), "positive"),
    ],
)
def test_spatial_pyramid_pool_rejects_bad_input(
    features: Tensor, levels: Sequence[int], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        spatial_pyramid_pool(features, levels)


# ---------------------------------------------------------------------------------------------
# project_windows (docs/model.md §3, worked by hand with S = 16)


def test_project_windows_hand_worked_cases() -> None:
    boxes = torch.tensor(
        [
            # left = floor(0/16)+1 = 1, top = floor(0/16)+1 = 1,
            # right = ceil(160/16)-1 = 9, bottom = ceil(80/16)-1 = 4
            [0.0, 0.0, 160.0, 80.0],
            # left = floor(17/16)+1 = 2, top = floor(33/16)+1 = 3,
            # right = ceil(100.5/16)-1 = 6, bottom = ceil(95/16)-1 = 5
            [17.0, 33.0, 100.5, 95.0],
            # tiny: left = 1+1 = 2, right = ceil(20/16)-1 = 1 -> both floor(3/2) = 1;
            # top = 2+1 = 3, bottom = ceil(40/16)-1 = 2 -> both floor(5/2) = 2
            [16.0, 32.0, 20.0, 40.0],
            # a point at 100: left = 6+1 = 7, right = 7-1 = 6 -> floor(13/2) = 6 (both axes)
            [100.0, 100.0, 100.0, 100.0],
            # exactly one cell: left = 2+1 = 3, right = 4-1 = 3
            [32.0, 32.0, 64.0, 64.0],
            # clamped: right = ceil(999/16)-1 = 62 -> W5-1 = 9, bottom = 62 -> H5-1 = 7
            [0.0, 0.0, 999.0, 999.0],
            # starts beyond the map: left = 63+1 = 64, right = 63 -> collapse to 63 -> clamp 9
            [1008.0, 1008.0, 1010.0, 1010.0],
            # negative coordinates: left = floor(-5/16)+1 = 0, right = ceil(-1/16)-1 = -1
            # -> collapse to floor(-1/2) = -1 -> clamp to 0
            [-5.0, -5.0, -1.0, -1.0],
        ]
    )
    cells = project_windows(boxes, (8, 10))
    assert cells.dtype == torch.int64
    expected = [
        [1, 1, 9, 4],
        [2, 3, 6, 5],
        [1, 2, 1, 2],
        [6, 6, 6, 6],
        [3, 3, 3, 3],
        [1, 1, 9, 7],
        [9, 7, 9, 7],
        [0, 0, 0, 0],
    ]
    assert cells.tolist() == expected


def test_project_windows_other_stride_and_empty() -> None:
    cells = project_windows(torch.tensor([[10.0, 10.0, 50.0, 30.0]]), (20, 20), stride=8)
    # left = floor(10/8)+1 = 2, top = 2, right = ceil(50/8)-1 = 6, bottom = ceil(30/8)-1 = 3
    assert cells.tolist() == [[2, 2, 6, 3]]
    empty = project_windows(torch.empty(0, 4), (5, 5))
    assert empty.shape == (0, 4)
    assert empty.dtype == torch.int64


@pytest.mark.parametrize(
    ("boxes", "feature_size", "stride", "message"),
    [
        (torch.zeros(3), (5, 5), 16, r"\[K, 4\]"),
        (torch.zeros(2, 5), (5, 5), 16, r"\[K, 4\]"),
        (torch.zeros(1, 4), (0, 5), 16, "feature_size"),
        (torch.zeros(1, 4), (5,), 16, "feature_size"),
        (torch.zeros(1, 4), (5, 5), 0, "stride"),
        (torch.tensor([[0.0, 0.0, float("nan"), 1.0]]), (5, 5), 16, "finite"),
        (torch.tensor([[5.0, 0.0, 1.0, 1.0]]), (5, 5), 16, "x1 <= x2"),
    ],
)
def test_project_windows_rejects_bad_input(
    boxes: Tensor, feature_size: tuple[int, int], stride: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        project_windows(boxes, feature_size, stride)


#: 1-20 windows as ``(x, y, w, h)``, reaching past every border of feature maps up to 80 cells.
XYWH_WINDOWS = st.lists(
    st.tuples(
        st.floats(-50, 1200, allow_nan=False),
        st.floats(-50, 1200, allow_nan=False),
        st.floats(0, 400, allow_nan=False),
        st.floats(0, 400, allow_nan=False),
    ),
    min_size=1,
    max_size=20,
)


@settings(max_examples=60, deadline=None)
@given(
    boxes=XYWH_WINDOWS,
    height=st.integers(1, 80),
    width=st.integers(1, 80),
)
def test_project_windows_always_gives_valid_cells(
    boxes: list[tuple[float, float, float, float]], height: int, width: int
) -> None:
    as_xyxy = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in boxes], dtype=torch.float64)
    cells = project_windows(as_xyxy, (height, width))
    left, top, right, bottom = cells.unbind(1)
    assert bool(((left >= 0) & (left <= right) & (right < width)).all())
    assert bool(((top >= 0) & (top <= bottom) & (bottom < height)).all())


# ---------------------------------------------------------------------------------------------
# project_windows_offset (the SPP_net release's spm_pool_caffe_mex.cpp)

RELEASE_POOLER = {"offset0": 18.0, "offset": 9.5, "step": 16.0}


def _release_projection_loop(
    box: Sequence[float], height: int, width: int, offset0: float, offset: float, step: float
) -> list[int]:
    """The C++ on one 0-based box, written out with Python's math: 0-based (l, t, r, b)."""
    x1, y1, x2, y2 = (v + 1.0 for v in box)  # MATLAB's 1-based box
    left = math.floor((x1 - offset0 + offset) / step + 0.5) + 1
    top = math.floor((y1 - offset0 + offset) / step + 0.5) + 1
    right = math.ceil((x2 - offset0 - offset) / step - 0.5) + 1
    bottom = math.ceil((y2 - offset0 - offset) / step - 0.5) + 1
    if left > right:
        left = right = int((left + right) / 2)  # C: truncation toward zero
    if top > bottom:
        top = bottom = int((top + bottom) / 2)
    left, right = (min(width, max(1, v)) - 1 for v in (left, right))
    top, bottom = (min(height, max(1, v)) - 1 for v in (top, bottom))
    return [left, top, right, bottom]


def test_project_windows_offset_hand_worked_cases() -> None:
    boxes = torch.tensor(
        [
            # 1-based (50, 40, 200, 120): left = floor((50 - 18 + 9.5) / 16 + 0.5) + 1 = 4,
            # top = floor(31.5 / 16 + 0.5) + 1 = 3, right = ceil((200 - 27.5) / 16 - 0.5) + 1
            # = 12, bottom = ceil(92.5 / 16 - 0.5) + 1 = 7; 0-based (3, 2, 11, 6)
            [49.0, 39.0, 199.0, 119.0],
            # x: left = floor(91.5 / 16 + 0.5) + 1 = 7 > right = ceil(76.5 / 16 - 0.5) + 1 = 6:
            # both (7 + 6) / 2 = 6, 0-based 5
            [99.0, 39.0, 103.0, 119.0],
            # far outside on the left and top: every end clamps to cell 1, 0-based 0
            [-201.0, -201.0, -151.0, -151.0],
        ]
    )
    cells = project_windows_offset(boxes, (20, 20), **RELEASE_POOLER)
    assert cells.dtype == torch.int64
    assert cells.tolist() == [[3, 2, 11, 6], [5, 2, 5, 6], [0, 0, 0, 0]]
    # clamped to a 6 x 10 map
    clamped = project_windows_offset(boxes[:1], (6, 10), **RELEASE_POOLER)
    assert clamped.tolist() == [[3, 2, 9, 5]]


def test_project_windows_offset_empty_and_invalid() -> None:
    empty = project_windows_offset(torch.empty(0, 4), (5, 5), **RELEASE_POOLER)
    assert empty.shape == (0, 4) and empty.dtype == torch.int64
    with pytest.raises(ValueError, match="positive step"):
        project_windows_offset(torch.zeros(1, 4), (5, 5), offset0=0, offset=0, step=0)
    with pytest.raises(ValueError, match="x1 <= x2"):
        project_windows_offset(torch.tensor([[5.0, 0, 1, 1]]), (5, 5), **RELEASE_POOLER)
    with pytest.raises(ValueError, match="feature_size"):
        project_windows_offset(torch.zeros(1, 4), (0, 5), **RELEASE_POOLER)


@settings(max_examples=60, deadline=None)
@given(
    boxes=XYWH_WINDOWS,
    height=st.integers(1, 80),
    width=st.integers(1, 80),
)
def test_project_windows_offset_is_the_cpp_loop(
    boxes: list[tuple[float, float, float, float]], height: int, width: int
) -> None:
    as_xyxy = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in boxes], dtype=torch.float64)
    cells = project_windows_offset(as_xyxy, (height, width), **RELEASE_POOLER)
    expected = [
        _release_projection_loop(b, height, width, **RELEASE_POOLER) for b in as_xyxy.tolist()
    ]
    assert cells.tolist() == expected
    left, top, right, bottom = cells.unbind(1)
    assert bool(((left >= 0) & (left <= right) & (right < width)).all())
    assert bool(((top >= 0) & (top <= bottom) & (bottom < height)).all())


def test_offset_rule_with_offset0_1_and_offset_8_is_the_papers_rule() -> None:
    """In the 0-based frame the paper's floor(x / 16) + 1 and ceil(x / 16) - 1 are the C++ rule
    with offset0 = 1, offset = 8, step = 16."""
    generator = torch.Generator().manual_seed(0)
    xy = torch.rand(500, 2, generator=generator, dtype=torch.float64) * 900 - 50
    wh = torch.rand(500, 2, generator=generator, dtype=torch.float64) * 300
    boxes = torch.cat([xy, xy + wh], dim=1)
    boxes[:100] = boxes[:100].round()  # integers land on cell borders
    paper = project_windows(boxes, (40, 50), 16)
    offset = project_windows_offset(boxes, (40, 50), offset0=1.0, offset=8.0, step=16.0)
    assert offset.tolist() == paper.tolist()


# ---------------------------------------------------------------------------------------------
# roi_spp


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_roi_spp_random_regions_match_reference(
    backend: str,
    dtype: torch.dtype,
    seed: int,
    make_map: Callable[..., Tensor],
    random_regions: Callable[..., Tensor],
) -> None:
    features = make_map(3, 7, 11, 14, dtype, seed)
    regions = random_regions(3, 11, 14, 40, seed)
    pooled = BACKENDS[backend](features, regions, (1, 2, 3, 6))
    assert pooled.shape == (40, 7 * 50)
    assert pooled.dtype == dtype
    assert_exact(pooled, roi_spp_reference(features, regions))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [(7, 9), (1, 1), (2, 13), (6, 6), (20, 3)])
def test_roi_spp_edge_regions_match_reference(
    device: str,
    dtype: torch.dtype,
    size: tuple[int, int],
    make_map: Callable[..., Tensor],
    edge_regions: Callable[..., Tensor],
) -> None:
    features = make_map(2, 6, *size, dtype, seed=3)
    regions = edge_regions(2, *size)
    expected = roi_spp_reference(features, regions)
    pooled = roi_spp(features.to(device), regions.to(device))
    assert pooled.device.type == device
    assert_exact(pooled.cpu(), expected)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize("levels", LEVEL_SETS)
def test_roi_spp_any_levels_match_reference(
    backend: str,
    levels: tuple[int, ...],
    make_map: Callable[..., Tensor],
    random_regions: Callable[..., Tensor],
) -> None:
    features = make_map(2, 5, 12, 9, torch.float32, seed=4)
    regions = random_regions(2, 12, 9, 25, 4)
    pooled = BACKENDS[backend](features, regions, levels)
    assert pooled.shape == (25, 5 * sum(n * n for n in levels))
    assert_exact(pooled, roi_spp_reference(features, regions, levels))


def test_roi_spp_output_layout_by_hand() -> None:
    # One 2-channel map 4 x 4 with channel 1 = -channel 0, region = the whole map.
    grid = torch.arange(16.0).reshape(4, 4)
    features = torch.stack([grid, -grid])[None]  # [1, 2, 4, 4]
    pooled = roi_spp(features, torch.tensor([[0, 0, 0, 3, 3]]), (1, 2))[0]
    level1 = [15.0, 0.0]
    level2_ch0 = [5.0, 7.0, 13.0, 15.0]  # bins (0,0) (0,1) (1,0) (1,1)
    level2_ch1 = [-0.0, -2.0, -8.0, -10.0]
    assert pooled.tolist() == level1 + level2_ch0 + level2_ch1


def test_roi_spp_full_map_region_equals_spatial_pyramid_pool(
    make_map: Callable[..., Tensor],
) -> None:
    features = make_map(2, 4, 10, 13, torch.float32, seed=5)
    regions = torch.tensor([[0, 0, 0, 12, 9], [1, 0, 0, 12, 9]])
    assert_exact(roi_spp(features, regions), spatial_pyramid_pool(features))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_roi_spp_no_regions_gives_empty_tensor(device: str, dtype: torch.dtype) -> None:
    features = torch.zeros(2, 8, 5, 5, dtype=dtype, device=device)
    pooled = roi_spp(features, torch.empty(0, 5, dtype=torch.int64, device=device))
    assert pooled.shape == (0, 8 * 50)
    assert pooled.dtype == dtype
    assert pooled.device == features.device
    assert roi_spp_reference(features, torch.empty(0, 5, dtype=torch.long)).shape == (0, 400)


def test_roi_spp_propagates_nan_like_amax(
    make_map: Callable[..., Tensor], edge_regions: Callable[..., Tensor]
) -> None:
    features = make_map(2, 3, 7, 9, torch.float32, seed=6)
    features[1, 2, 3, 4] = float("nan")
    regions = edge_regions(2, 7, 9)
    pooled = roi_spp(features, regions)
    assert bool(pooled.isnan().any())
    assert_exact(pooled, roi_spp_reference(features, regions))


def test_roi_spp_infinities_and_memory_formats(make_map: Callable[..., Tensor]) -> None:
    features = make_map(1, 16, 6, 8, torch.float32, seed=7)
    features[0, 0] = float("-inf")
    features[0, 1, 2, 3] = float("inf")
    regions = torch.tensor([[0, 0, 0, 7, 5], [0, 3, 2, 3, 2], [0, 1, 1, 5, 4]])
    expected = roi_spp_reference(features, regions)
    assert_exact(roi_spp(features.to(memory_format=torch.channels_last), regions), expected)
    assert_exact(roi_spp(features.double(), regions.int()), expected.double())
    sliced = make_map(1, 32, 6, 8, torch.float32, seed=7)[:, ::2]  # non-contiguous channels
    assert_exact(roi_spp(sliced, regions), roi_spp_reference(sliced, regions))


def test_roi_spp_in_inference_mode_and_with_autograd(
    make_map: Callable[..., Tensor], random_regions: Callable[..., Tensor]
) -> None:
    features = make_map(1, 4, 8, 8, torch.float32, seed=8)
    regions = random_regions(1, 8, 8, 10, 8)
    expected = roi_spp_reference(features, regions)
    with torch.inference_mode():
        assert_exact(roi_spp(features, regions), expected)
    leaf = features.clone().requires_grad_()
    pooled = roi_spp(leaf, regions)
    assert pooled.requires_grad
    pooled.sum().backward()
    assert leaf.grad is not None
    assert_exact(pooled.detach(), expected)


@pytest.mark.parametrize(
    ("regions", "message"),
    [
        (torch.zeros(3, 4, dtype=torch.long), r"\[K, 5\]"),
        (torch.zeros(5, dtype=torch.long), r"\[K, 5\]"),
        (torch.zeros(1, 5), "integer"),
        (torch.tensor([[2, 0, 0, 0, 0]]), "batch index"),
        (torch.tensor([[-1, 0, 0, 0, 0]]), "batch index"),
        (torch.tensor([[0, 0, 0, 6, 0]]), "left/right"),
        (torch.tensor([[0, -1, 0, 0, 0]]), "left/right"),
        (torch.tensor([[0, 0, 0, 0, 4]]), "top/bottom"),
        (torch.tensor([[0, 3, 0, 2, 0]]), "left > right"),
        (torch.tensor([[0, 0, 3, 0, 2]]), "top > bottom"),
    ],
)
def test_roi_spp_rejects_bad_regions(regions: Tensor, message: str) -> None:
    features = torch.zeros(2, 3, 4, 6)
    with pytest.raises(ValueError, match=message):
        roi_spp(features, regions)
    with pytest.raises(ValueError, match=message):
        roi_spp_reference(features, regions)


@pytest.mark.parametrize(
    ("features", "levels", "message"),
    [
        (torch.zeros(3, 4, 6), (1,), r"\[B, C, H, W\]"),
        (torch.zeros(1, 3, 4, 6, dtype=torch.int64), (1,), "floating"),
        (torch.zeros(1, 3, 4, 6), (0,), "positive"),
        (torch.zeros(1, 3, 4, 6), (-2, 1), "positive"),
        (torch.zeros(1, 3, 4, 6), (), "empty"),
    ],
)
def test_roi_spp_rejects_bad_features_and_levels(
    features: Tensor, levels: Sequence[int], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        roi_spp(features, torch.zeros(1, 5, dtype=torch.long), levels)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.gpu
def test_roi_spp_rejects_regions_on_another_device() -> None:
    with pytest.raises(ValueError, match="device"):
        roi_spp(torch.zeros(1, 3, 4, 6, device="cuda"), torch.zeros(1, 5, dtype=torch.long))


@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    batch=st.integers(1, 3),
    channels=st.integers(1, 9),
    height=st.integers(1, 12),
    width=st.integers(1, 12),
    levels=st.sampled_from(LEVEL_SETS),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**16),
)
def test_roi_spp_hypothesis(
    data: st.DataObject,
    batch: int,
    channels: int,
    height: int,
    width: int,
    levels: tuple[int, ...],
    dtype: torch.dtype,
    seed: int,
) -> None:
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(batch, channels, height, width, generator=gen).to(dtype)
    windows = data.draw(
        st.lists(
            st.tuples(
                st.integers(0, batch - 1),
                st.integers(0, width - 1),
                st.integers(0, width - 1),
                st.integers(0, height - 1),
                st.integers(0, height - 1),
            ),
            max_size=12,
        )
    )
    regions = torch.tensor(
        [(b, min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)) for b, x0, x1, y0, y1 in windows],
        dtype=torch.int64,
    ).reshape(-1, 5)
    expected = roi_spp_reference(features, regions, levels)
    assert_exact(roi_spp(features, regions, levels), expected)
    if len(regions):
        assert_exact(roi_spp_torch(features, regions, levels), expected)


def test_pyramid_layout_derives_coarse_levels_from_finer_ones() -> None:
    layout = pyramid_layout((1, 2, 3, 6))
    assert layout.bin_offsets == (0, 1, 5, 14)
    assert layout.total_bins == 50
    assert layout.order == (3, 2, 1, 0)
    assert layout.source == (1, 3, 3, -1)  # 1 from 2, 2 from 6, 3 from 6, 6 from the map
    repeated = pyramid_layout((2, 5, 2))
    assert repeated.source == (-1, -1, 0)


# ---------------------------------------------------------------------------------------------
# roi_spp(..., out=): the caller's buffer


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [*DTYPES, torch.float64])
def test_roi_spp_writes_into_out_and_returns_it(
    device: str,
    dtype: torch.dtype,
    make_map: Callable[..., Tensor],
    random_regions: Callable[..., Tensor],
) -> None:
    features = make_map(2, 6, 9, 11, dtype, seed=11)
    regions = random_regions(2, 9, 11, 30, 11)
    expected = roi_spp_reference(features, regions)
    out = torch.full((30, 6 * 50), float("nan"), dtype=dtype, device=device)
    result = roi_spp(features.to(device), regions.to(device), out=out)
    assert result is out
    assert_exact(out.cpu(), expected)


def test_roi_spp_out_can_be_the_first_rows_of_a_bigger_buffer(
    make_map: Callable[..., Tensor], random_regions: Callable[..., Tensor]
) -> None:
    features = make_map(1, 4, 8, 10, torch.float32, seed=12)
    regions = random_regions(1, 8, 10, 15, 12)
    buffer = torch.full((40, 4 * 14), -7.0)
    for count in (15, 6):  # reused: the second call overwrites only its rows
        result = roi_spp(features, regions[:count], (1, 2, 3), out=buffer[:count])
        assert result.data_ptr() == buffer.data_ptr()
        assert_exact(buffer[:count], roi_spp_reference(features, regions[:count], (1, 2, 3)))
    assert bool((buffer[15:] == -7.0).all())


def test_roi_spp_out_allocates_no_output_on_the_compiled_path(
    make_map: Callable[..., Tensor], random_regions: Callable[..., Tensor]
) -> None:
    from app.ops import _spp_cpu

    if not _spp_cpu.available():
        pytest.skip("needs numba")
    features = make_map(1, 5, 7, 7, torch.float16, seed=13)
    regions = random_regions(1, 7, 7, 12, 13)
    out = torch.empty(12, 5 * 50, dtype=torch.float16)
    with mock.patch.object(_spp_cpu, "_empty_output", side_effect=AssertionError("allocated")):
        assert roi_spp(features, regions, out=out) is out
    assert_exact(out, roi_spp_reference(features, regions))


def test_roi_spp_out_on_the_nan_path_and_with_no_regions(
    make_map: Callable[..., Tensor], edge_regions: Callable[..., Tensor]
) -> None:
    features = make_map(2, 3, 5, 6, torch.float32, seed=14)
    features[0, 1, 2, 2] = float("nan")  # the compiled loop declines, the torch path copies in
    regions = edge_regions(2, 5, 6)
    out = torch.zeros(len(regions), 3 * 50)
    assert roi_spp(features, regions, out=out) is out
    assert bool(out.isnan().any())
    assert_exact(out, roi_spp_reference(features, regions))
    empty = torch.empty(0, 3 * 50)
    assert roi_spp(features, torch.empty(0, 5, dtype=torch.long), out=empty) is empty
    with pytest.raises(ValueError, match=r"expected out of shape \[0, 150\], got \[1, 150\]"):
        roi_spp(features, torch.empty(0, 5, dtype=torch.long), out=torch.empty(1, 150))


@pytest.mark.parametrize(
    ("out", "message"),
    [
        pytest.param([[0.0] * 150] * 2, "expected out to be a Tensor", id="list"),
        pytest.param(torch.empty(2, 149), r"of shape \[2, 150\], got \[2, 149\]", id="short"),
        pytest.param(torch.empty(1, 2, 150), r"of shape \[2, 150\], got \[1, 2, 150\]", id="3d"),
        pytest.param(torch.empty(150, 2).t(), "contiguous", id="transposed"),
        pytest.param(torch.empty(2, 150, dtype=torch.float64), "dtype torch.float32", id="dtype"),
        pytest.param(torch.empty(2, 150).requires_grad_(), "not differentiable", id="grad"),
        pytest.param(
            "cuda",
            "device",
            marks=[
                pytest.mark.gpu,
                pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
            ],
            id="cuda",
        ),
    ],
)
def test_roi_spp_rejects_bad_out(out: object, message: str) -> None:
    features = torch.zeros(1, 3, 4, 6)
    regions = torch.tensor([[0, 0, 0, 5, 3], [0, 1, 1, 2, 2]])
    if out == "cuda":
        out = torch.empty(2, 150, device="cuda")
    with pytest.raises(ValueError, match=message):
        roi_spp(features, regions, out=out)  # type: ignore[arg-type]


def test_roi_spp_rejects_out_for_features_that_need_grad_or_share_its_memory() -> None:
    regions = torch.tensor([[0, 0, 0, 5, 3], [0, 1, 1, 2, 2]])
    leaf = torch.zeros(1, 3, 4, 6, requires_grad=True)
    with pytest.raises(ValueError, match="not differentiable"):
        roi_spp(leaf, regions, out=torch.empty(2, 150))
    with torch.no_grad():  # no graph to record: allowed
        assert_exact(roi_spp(leaf, regions, out=torch.empty(2, 150)), torch.zeros(2, 150))
    storage = torch.zeros(2, 150)
    features = storage.view(-1)[:72].view(1, 3, 4, 6)  # the first 72 values of out
    with pytest.raises(ValueError, match="share memory"):
        roi_spp(features, regions, out=storage)


@pytest.mark.skipif(
    __import__("numba").config.NUMBA_NUM_THREADS < 2, reason="numba has fewer than 2 threads"
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_roi_spp_same_bits_on_1_and_2_threads(
    dtype: torch.dtype, make_map: Callable[..., Tensor], random_regions: Callable[..., Tensor]
) -> None:
    """The compiled path splits the windows into chunks per thread (8 per thread, at most one
    per window); each window's bits must not depend on which thread or chunk pooled it."""
    features = make_map(2, 64, 13, 17, dtype, seed=15)
    regions = random_regions(2, 13, 17, 801, 15)
    threads = torch.get_num_threads()
    try:
        pooled = {}
        for count in (1, 2):
            torch.set_num_threads(count)  # the compiled path runs on torch's thread count
            pooled[count] = roi_spp(features, regions)
    finally:
        torch.set_num_threads(threads)
    assert_exact(pooled[2], pooled[1])
    assert_exact(pooled[1][::40], roi_spp_reference(features, regions[::40]))
