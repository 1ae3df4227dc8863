"""Scales (SPEC 4) and box coding (SPEC 6), against hand-worked cases and round trips."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from app.ops.boxes import (
    BBOX_DELTA_CLAMP,
    choose_scale_per_window,
    clip_boxes,
    decode_boxes,
    encode_boxes,
    resize_plan,
    scaled_size,
)

PAPER_SCALES = (480, 576, 688, 864, 1200)

# ---------------------------------------------------------------------------------------------
# scaled_size / resize_plan


@pytest.mark.parametrize(
    ("size", "scale", "cap", "expected"),
    [
        ((480, 640), 688, 2000, (688, 917)),  # 688 * 640 / 480 = 917.33 -> 917
        ((640, 480), 688, 2000, (917, 688)),  # portrait: the width is the shorter side
        ((500, 500), 688, 2000, (688, 688)),
        ((375, 500), 480, 2000, (480, 640)),
        ((2, 3), 3, 100, (3, 5)),  # 3 * 3 / 2 = 4.5: halves round up
        ((100, 1000), 688, 2000, (200, 2000)),  # 6880 > 2000: long side capped, short 200
        ((1000, 100), 688, 2000, (2000, 200)),
        ((300, 1000), 1200, 2000, (600, 2000)),  # 4000 > 2000
        ((688, 917), 688, 2000, (688, 917)),  # already at the scale
    ],
)
def test_scaled_size_hand_worked(
    size: tuple[int, int], scale: int, cap: int, expected: tuple[int, int]
) -> None:
    assert scaled_size(*size, scale, cap) == expected


def test_resize_plan_reports_factors_and_cap() -> None:
    plan = resize_plan(480, 640, 688, 2000)
    assert (plan.height, plan.width, plan.capped) == (688, 917, False)
    assert plan.factor_y == 688 / 480
    assert plan.factor_x == 917 / 640
    capped = resize_plan(100, 1000, 688, 2000)
    assert (capped.height, capped.width, capped.capped) == (200, 2000, True)
    assert capped.factor_x == 2.0


@pytest.mark.parametrize(
    "args", [(0, 10, 688, 2000), (10, -1, 688, 2000), (10, 10, 0, 2000), (10, 10, 5, 0)]
)
def test_scaled_size_rejects_non_positive(args: tuple[int, int, int, int]) -> None:
    with pytest.raises(ValueError, match="positive integer"):
        scaled_size(*args)


# ---------------------------------------------------------------------------------------------
# choose_scale_per_window


def test_choose_scale_hand_worked() -> None:
    boxes = torch.tensor(
        [
            [10.0, 10.0, 234.0, 234.0],  # 224 x 224 in an image with m = 688: s = 688 exact
            [0.0, 0.0, 112.0, 112.0],  # wants s = 1376: the largest, 1200
            [0.0, 0.0, 600.0, 600.0],  # wants s = 256.9: the smallest, 480
            [0.0, 0.0, 224.0 * 688 / 576, 224.0 * 688 / 576],  # wants 576 exactly
            [5.0, 5.0, 5.0, 50.0],  # zero width: area 0 everywhere, tie -> the smallest
        ]
    )
    assert choose_scale_per_window(boxes, PAPER_SCALES, 688).tolist() == [2, 4, 0, 1, 0]


def test_choose_scale_exact_tie_goes_to_the_smaller_scale() -> None:
    # m = 183, a 98 x 61 window: areas at 480 and 576 are 5978 * 480^2 / 183^2 = 41126.4 and
    # 5978 * 576^2 / 183^2 = 59225.6, exactly 9049.6 below and above 224^2 = 50176
    # (5978 * (480^2 + 576^2) = 2 * 50176 * 183^2).
    boxes = torch.tensor([[0.0, 0.0, 98.0, 61.0], [100.0, 7.0, 198.0, 68.0]])
    assert choose_scale_per_window(boxes, (480, 576), 183).tolist() == [0, 0]
    assert choose_scale_per_window(boxes, (576, 480), 183).tolist() == [1, 1]  # any order
    nudged = torch.tensor([[0.0, 0.0, 97.5, 61.0]])  # a bit smaller: 576 is now closer
    assert choose_scale_per_window(nudged, (480, 576), 183).tolist() == [1]


def test_choose_scale_empty_and_invalid() -> None:
    empty = choose_scale_per_window(torch.empty(0, 4), PAPER_SCALES, 500)
    assert empty.shape == (0,)
    assert empty.dtype == torch.int64
    with pytest.raises(ValueError, match="at least one scale"):
        choose_scale_per_window(torch.zeros(1, 4), (), 500)
    with pytest.raises(ValueError, match="positive integer"):
        choose_scale_per_window(torch.zeros(1, 4), (480, 0), 500)
    with pytest.raises(ValueError, match=r"\[K, 4\]"):
        choose_scale_per_window(torch.zeros(4), PAPER_SCALES, 500)


@settings(max_examples=50, deadline=None)
@given(
    w=st.integers(1, 1500),
    h=st.integers(1, 1500),
    m=st.integers(100, 1500),
)
def test_choose_scale_is_the_brute_force_argmin(w: int, h: int, m: int) -> None:
    boxes = torch.tensor([[3.0, 4.0, 3.0 + w, 4.0 + h]])
    chosen = int(choose_scale_per_window(boxes, PAPER_SCALES, m)[0])
    # Exact rational arithmetic: distances as fractions over m^2; ties to the smaller scale.
    distances = [abs(w * h * s * s - 224 * 224 * m * m) for s in PAPER_SCALES]
    assert chosen == distances.index(min(distances))


# ---------------------------------------------------------------------------------------------
# encode_boxes / decode_boxes / clip_boxes


def test_encode_hand_worked() -> None:
    proposals = torch.tensor([[0.0, 0.0, 10.0, 20.0], [4.0, 4.0, 8.0, 8.0]])
    gt = torch.tensor([[5.0, 0.0, 15.0, 20.0], [2.0, 2.0, 10.0, 10.0]])
    deltas = encode_boxes(gt, proposals)
    # 1st: centre moves 5 = half a width, same size; 2nd: same centre, twice the size.
    expected = torch.tensor([[0.5, 0.0, 0.0, 0.0], [0.0, 0.0, math.log(2), math.log(2)]])
    torch.testing.assert_close(deltas, expected)


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**16), count=st.integers(0, 30))
def test_decode_inverts_encode(seed: int, count: int) -> None:
    gen = torch.Generator().manual_seed(seed)

    def random_boxes() -> Tensor:
        xy = torch.rand(count, 2, generator=gen, dtype=torch.float64) * 500
        # sizes 10..300: ratios below exp(BBOX_DELTA_CLAMP) = 62.5, so no clamping
        wh = torch.rand(count, 2, generator=gen, dtype=torch.float64) * 290 + 10
        return torch.cat([xy, xy + wh], dim=1)

    gt, proposals = random_boxes(), random_boxes()
    deltas = encode_boxes(gt, proposals)
    assert deltas.shape == (count, 4)
    torch.testing.assert_close(decode_boxes(deltas, proposals), gt, rtol=1e-12, atol=1e-9)


def test_decode_clamps_size_deltas_and_keeps_dtype() -> None:
    proposals = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    huge = torch.tensor([[0.0, 0.0, 50.0, 50.0]])
    decoded = decode_boxes(huge, proposals)
    side = 16 * math.exp(BBOX_DELTA_CLAMP)  # 1000
    torch.testing.assert_close(
        decoded, torch.tensor([[8 - side / 2, 8 - side / 2, 8 + side / 2, 8 + side / 2]])
    )
    assert (
        decode_boxes(torch.zeros(2, 4, dtype=torch.float16), torch.ones(2, 4)).dtype
        == torch.float32
    )
    assert decode_boxes(torch.zeros(0, 4), torch.zeros(0, 4)).shape == (0, 4)


def test_encode_and_decode_reject_bad_input() -> None:
    good = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    with pytest.raises(ValueError, match="positive width"):
        encode_boxes(good, torch.tensor([[1.0, 1.0, 1.0, 3.0]]))
    with pytest.raises(ValueError, match="same shape"):
        encode_boxes(good, torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"\[K, 4\]"):
        decode_boxes(torch.zeros(1, 3), good)
    with pytest.raises(ValueError, match="floating"):
        decode_boxes(torch.zeros(1, 4, dtype=torch.long), good)


def test_clip_boxes_to_last_pixel() -> None:
    boxes = torch.tensor([[-5.0, -1.0, 700.0, 300.0], [10.0, 20.0, 30.0, 40.0]])
    clipped = clip_boxes(boxes, (240, 320))
    assert clipped.tolist() == [[0.0, 0.0, 319.0, 239.0], [10.0, 20.0, 30.0, 40.0]]
    assert boxes[0, 0] == -5.0  # the input is left alone
