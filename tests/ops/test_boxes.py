"""Scales (docs/model.md §4) and box coding (§6), against hand-worked cases and round trips."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor
from torchvision.ops import nms

from app.ops.boxes import (
    BBOX_DELTA_CLAMP,
    choose_scale_by_expected_side,
    choose_scale_per_window,
    clip_boxes,
    decode_boxes,
    encode_boxes,
    inclusive_to_exclusive,
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


def test_choose_scale_target_side_and_inclusive_areas() -> None:
    # a 0..207 window is 207 wide (exclusive) or 208 (inclusive); m = 520, scales 500 / 540
    box = torch.tensor([[0.0, 0.0, 207.0, 207.0]])
    # inclusive, target 208: the window wants s = 520 exactly, 20 from each: tie -> smaller
    assert choose_scale_per_window(
        box, (540, 500), 520, target_side=208, inclusive=True
    ).tolist() == [1]
    # exclusive: it wants 208 * 520 / 207 = 522.5: 540 is nearer (17.5 vs 22.5 in side)
    assert choose_scale_per_window(box, (540, 500), 520, target_side=208).tolist() == [0]


@settings(max_examples=50, deadline=None)
@given(w=st.integers(0, 1500), h=st.integers(0, 1500), m=st.integers(100, 1500))
def test_choose_scale_inclusive_is_the_brute_force_argmin(w: int, h: int, m: int) -> None:
    boxes = torch.tensor([[3.0, 4.0, 3.0 + w, 4.0 + h]])
    chosen = choose_scale_per_window(boxes, PAPER_SCALES, m, target_side=208, inclusive=True)
    distances = [abs((w + 1) * (h + 1) * s * s - 208 * 208 * m * m) for s in PAPER_SCALES]
    assert int(chosen[0]) == distances.index(min(distances))


# ---------------------------------------------------------------------------------------------
# choose_scale_by_expected_side (the SPP_net release's rule)

RELEASE_SCALES = (480, 576, 688, 874, 1200)


def test_expected_side_rounds_halves_up_and_ties_take_the_first_listed() -> None:
    # 0..415 is 416 pixels (inclusive): 208 * 1001 / 416 = 500.5 -> 501, 1 from 500 and 502
    box = torch.tensor([[0.0, 0.0, 415.0, 415.0]])
    assert choose_scale_by_expected_side(box, (500, 502), 1001, target_side=208).tolist() == [0]
    assert choose_scale_by_expected_side(box, (502, 500), 1001, target_side=208).tolist() == [0]
    # rounding down instead would give 500, 0 from 500: the rule is visible with (499, 501)
    assert choose_scale_by_expected_side(box, (499, 501), 1001, target_side=208).tolist() == [1]
    # 208 * 528 / 208 = 528, halfway between 480 and 576: the first listed wins
    box = torch.tensor([[0.0, 0.0, 207.0, 207.0]])
    assert choose_scale_by_expected_side(box, (480, 576), 528, target_side=208).tolist() == [0]
    assert choose_scale_by_expected_side(box, (576, 480), 528, target_side=208).tolist() == [0]
    # 208 * 600 / 208 = 600: 576 is the nearest of the release's scales
    assert choose_scale_by_expected_side(box, RELEASE_SCALES, 600, target_side=208).tolist() == [1]


def test_expected_side_areas_inclusive_or_not() -> None:
    # exclusive 207 x 207: 208 * 520 / 207 = 522.51 -> 523, nearer 540 than 500
    box = torch.tensor([[0.0, 0.0, 207.0, 207.0]])
    kwargs = {"target_side": 208.0}
    assert choose_scale_by_expected_side(box, (500, 540), 520, **kwargs).tolist() == [0]  # 520
    assert choose_scale_by_expected_side(
        box, (500, 540), 520, inclusive=False, **kwargs
    ).tolist() == [1]
    # zero area (exclusive only): an infinite expectation, the first listed as MATLAB's min
    line = torch.tensor([[5.0, 5.0, 5.0, 60.0]])
    assert choose_scale_by_expected_side(
        line, (688, 480), 300, inclusive=False, **kwargs
    ).tolist() == [0]


def test_expected_side_empty_and_invalid() -> None:
    empty = choose_scale_by_expected_side(torch.empty(0, 4), RELEASE_SCALES, 500, target_side=208)
    assert empty.shape == (0,) and empty.dtype == torch.int64
    with pytest.raises(ValueError, match="at least one scale"):
        choose_scale_by_expected_side(torch.zeros(1, 4), (), 500, target_side=208)
    with pytest.raises(ValueError, match="target_side"):
        choose_scale_by_expected_side(torch.zeros(1, 4), (480,), 500, target_side=0.0)
    with pytest.raises(ValueError, match=r"\[K, 4\]"):
        choose_scale_by_expected_side(torch.zeros(4), (480,), 500, target_side=208)


@settings(max_examples=80, deadline=None)
@given(
    w=st.floats(0, 1500, allow_nan=False),
    h=st.floats(0, 1500, allow_nan=False),
    m=st.integers(2, 1500),
)
def test_expected_side_is_the_matlab_loop(w: float, h: float, m: int) -> None:
    boxes = torch.tensor([[3.0, 4.0, 3.0 + w, 4.0 + h]], dtype=torch.float64)
    chosen = int(choose_scale_by_expected_side(boxes, RELEASE_SCALES, m, target_side=208)[0])
    x1, y1, x2, y2 = boxes[0].tolist()
    expected = 208.0 * m / math.sqrt((x2 - x1 + 1) * (y2 - y1 + 1))  # spm_expected_scale.m
    rounded = math.floor(expected) + (1 if expected - math.floor(expected) >= 0.5 else 0)
    distances = [abs(s - rounded) for s in RELEASE_SCALES]
    assert chosen == distances.index(min(distances))  # MATLAB's min: the first


# ---------------------------------------------------------------------------------------------
# inclusive_to_exclusive: NMS with "+1" areas


def _nms_plus_one(boxes: list[list[float]], scores: list[float], threshold: float) -> list[int]:
    """Greedy NMS with pixel-set areas, written out (nms_multiclass_mex.cpp)."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    keep: list[int] = []
    for i in order:
        ok = True
        for j in keep:
            a, b = boxes[i], boxes[j]
            iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
            ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
            area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
            area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
            if iw * ih / (area_a + area_b - iw * ih) > threshold:
                ok = False
        if ok:
            keep.append(i)
    return keep


def test_inclusive_to_exclusive_gives_plus_one_nms() -> None:
    boxes = torch.tensor([[0.0, 0.0, 9.0, 9.0], [5.0, 0.0, 14.0, 9.0]])
    assert inclusive_to_exclusive(boxes).tolist() == [[0, 0, 10, 10], [5, 0, 15, 10]]
    scores = torch.tensor([0.9, 0.8])
    # exclusive IoU 4 * 9 / (81 + 81 - 36) = 0.286; with +1 areas 50 / 150 = 0.333
    assert nms(boxes, scores, 0.3).tolist() == [0, 1]
    assert nms(inclusive_to_exclusive(boxes), scores, 0.3).tolist() == [0]
    generator = torch.Generator().manual_seed(0)
    xy = torch.rand(60, 2, generator=generator) * 50
    wh = torch.rand(60, 2, generator=generator) * 30
    many = torch.cat([xy, xy + wh], dim=1).round()
    score = torch.rand(60, generator=generator)
    got = nms(inclusive_to_exclusive(many), score, 0.3).tolist()
    assert got == _nms_plus_one(many.tolist(), score.tolist(), 0.3)


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
