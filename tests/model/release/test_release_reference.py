"""The reference itself, on small cases worked out by hand from the release's sources."""

from __future__ import annotations

import math

import numpy as np
import pytest
from reference import (
    TRUNK,
    bin_range,
    caffe_input,
    caffe_pool_side,
    choose_scale_indices,
    conv2d,
    conv5_features,
    decode_boxes,
    expected_scales,
    fc_features,
    lrn_within_channel,
    matlab_round,
    max_pool_ceil,
    pool_region,
    project_box,
    reference_detect_windows,
    reference_nms,
    scale_box,
    svm_scores,
)
from release_files import make_release

from app.model.release import RELEASE_TRUNK


def test_projection_of_a_box_by_hand() -> None:
    arrays = make_release(0)  # offset0 18, offset 9.5, step 16
    # left = floor((50 - 18 + 9.5) / 16 + 0.5) + 1 = floor(3.09375) + 1 = 4
    # top = floor((40 - 8.5) / 16 + 0.5) + 1 = floor(2.46875) + 1 = 3
    # right = ceil((200 - 27.5) / 16 - 0.5) + 1 = ceil(10.28125) + 1 = 12
    # bottom = ceil((120 - 27.5) / 16 - 0.5) + 1 = ceil(5.28125) + 1 = 7
    assert project_box(np.array([50, 40, 200, 120]), 20, 20, arrays) == (3, 4, 7, 12)
    # clamped to the 6 x 10 map (1-based)
    assert project_box(np.array([50, 40, 200, 120]), 6, 10, arrays) == (3, 4, 6, 10)
    # x: left = floor(5.71875 + 0.5) + 1 = 7 > right = ceil(4.28125) + 1 = 6 -> both (7 + 6) / 2 = 6
    assert project_box(np.array([100, 40, 104, 120]), 20, 20, arrays)[1::2] == (6, 6)
    # far outside on the left: both ends clamp to cell 1
    assert project_box(np.array([-200, -200, -150, -150]), 20, 20, arrays) == (1, 1, 1, 1)


def test_expected_scale_rounds_halves_up_and_ties_take_the_first_scale() -> None:
    arrays = make_release(0)  # sz_conv_standard 13 * step 16 = 208
    assert matlab_round(500.5) == 501 and matlab_round(2.4999) == 2 and matlab_round(-2.5) == -3
    # 208 * 1001 / 416 = 500.5 -> 501; 1-based inclusive side 416 = 416 - 1 + 1
    box = np.array([[1.0, 1.0, 416.0, 416.0]])
    assert expected_scales(box, 1001, arrays).tolist() == [501.0]
    # 208 * 528 / 208 = 528, halfway between 480 and 576: the first listed wins
    box = np.array([[1.0, 1.0, 208.0, 208.0]])
    assert choose_scale_indices(box, 528, [480, 576], arrays).tolist() == [0]
    assert choose_scale_indices(box, 528, [576, 480], arrays).tolist() == [0]
    # 208 * 600 / 208 = 600: 576 is closest among the release's five scales
    assert choose_scale_indices(box, 600, [480, 576, 688, 874, 1200], arrays).tolist() == [1]


def test_box_scaling_keeps_pixel_one_and_maps_the_last_pixel_to_the_last() -> None:
    box = np.array([1.0, 1.0, 500.0, 375.0])  # a 500 x 375 image's whole extent, 1-based
    np.testing.assert_allclose(scale_box(box, 688, 375), [1.0, 1.0, 1 + 499 * 687 / 374, 688.0])


def test_bin_layout_is_level_then_channel_then_row_then_column() -> None:
    conv5 = np.zeros((2, 6, 6))
    for c in range(2):
        for r in range(6):
            for col in range(6):
                conv5[c, r, col] = 100 * c + 10 * r + col
    whole = (1, 1, 6, 6)
    # level 1: per channel max (55, 155); level 2: bins of 3 x 3 cells, max at their last cell
    expected_12 = [55, 155, 22, 25, 52, 55, 122, 125, 152, 155]
    np.testing.assert_array_equal(pool_region(conv5, whole, (1, 2)), expected_12)
    np.testing.assert_array_equal(
        pool_region(conv5, whole, (2, 1)), expected_12[2:] + expected_12[:2]
    )
    # a 2 x 3 region at rows 2-3, columns 4-6 (1-based): level 2 rows split 1/1, columns 0-2 / 1-3
    np.testing.assert_array_equal(pool_region(conv5, (2, 4, 3, 6), (2,))[:4], [14, 15, 24, 25])


def test_bins_overlap_when_there_are_more_bins_than_cells() -> None:
    assert [bin_range(i, 6, 2) for i in range(6)] == [
        (0, 1),
        (0, 1),
        (0, 1),
        (1, 2),
        (1, 2),
        (1, 2),
    ]
    assert [bin_range(i, 3, 7) for i in range(3)] == [(0, 3), (2, 5), (4, 7)]


def test_float32_bins_equal_the_exact_rule_for_the_release_levels() -> None:
    # The C++ computes bins in float32; for 1, 2, 3, 4, 6 bins that is floor(i h / n) and
    # ceil((i + 1) h / n) exactly, so roi_spp's integer rule reproduces it.
    for n in (1, 2, 3, 4, 6):
        for h in range(1, 400):
            for i in range(n):
                assert bin_range(i, n, h) == ((i * h) // n, -((-(i + 1) * h) // n)), (n, h, i)
    # not for 5 bins: 3/5 in float32 times 25 rounds above 15
    assert bin_range(2, 5, 25) == (10, 16)


def test_conv2d_by_hand() -> None:
    x = np.arange(16, dtype=np.float64).reshape(1, 4, 4)
    w = np.ones((1, 1, 3, 3))
    out = conv2d(x, w, np.array([0.5]), stride=2, pad=1)
    # padded windows centred on (0,0), (0,2), (2,0), (2,2)
    assert out.shape == (1, 2, 2)
    np.testing.assert_array_equal(
        out[0],
        [
            [0 + 1 + 4 + 5 + 0.5, 1 + 2 + 3 + 5 + 6 + 7 + 0.5],
            [4 + 5 + 8 + 9 + 12 + 13 + 0.5, 5 + 6 + 7 + 9 + 10 + 11 + 13 + 14 + 15 + 0.5],
        ],
    )


def test_ceil_mode_max_pool_by_hand() -> None:
    x = np.arange(16, dtype=np.float64).reshape(1, 4, 4)
    # (4 - 3) / 2 = 0.5 -> ceil 1 -> 2 outputs; the second window holds rows/columns 2-3 only
    np.testing.assert_array_equal(max_pool_ceil(x)[0], [[10, 11], [14, 15]])
    assert [caffe_pool_side(a) for a in (110, 26, 5, 4, 3)] == [55, 13, 2, 2, 1]


def test_within_channel_lrn_divides_by_the_full_window() -> None:
    x = np.full((1, 3, 3), 2.0)
    out = lrn_within_channel(x, size=3, alpha=0.9, beta=0.75)
    # the centre sees nine 4s, a corner four (zeros outside), always divided by 9
    assert out[0, 1, 1] == pytest.approx(2.0 * (1 + 0.9 / 9 * 36) ** -0.75)
    assert out[0, 0, 0] == pytest.approx(2.0 * (1 + 0.9 / 9 * 16) ** -0.75)


def test_release_trunk_maps_224_to_13() -> None:
    arrays = make_release(0)
    image = np.random.default_rng(0).integers(0, 256, (224, 224, 3)).astype(np.uint8)
    sides = [224]
    for _name, k, s, p, pool in TRUNK:
        side = (sides[-1] + 2 * p - k) // s + 1
        sides.append(caffe_pool_side(side) if pool else side)
    assert sides == [224, 55, 13, 13, 13, 13]  # conv1 110 -> pool 55, conv2 26 -> pool 13
    assert conv5_features(image, arrays).shape == (4, 13, 13)
    # the app's constants describe the same trunk as this reference
    assert [(g.name, g.kernel, g.stride, g.pad, g.lrn_and_pool) for g in RELEASE_TRUNK] == list(
        TRUNK
    )


def test_input_is_bgr_minus_128_and_grey_is_replicated() -> None:
    rgb = np.array([[[10, 20, 30]]], dtype=np.uint8)
    np.testing.assert_array_equal(caffe_input(rgb)[:, 0, 0], [30 - 128, 20 - 128, 10 - 128])
    np.testing.assert_array_equal(caffe_input(np.array([[7]], dtype=np.uint8))[:, 0, 0], [-121] * 3)


def test_fc_svm_and_scaling_by_hand() -> None:
    arrays = make_release(0, fc_dims=(2, 2), num_classes=1, with_bbox=False)
    arrays.fc = [
        ("fc6", np.array([[1.0, -1.0], [0.5, 0.5]]), np.array([0.0, -3.0])),
        ("fc7", np.array([[2.0, 0.0], [0.0, -1.0]]), np.array([1.0, 1.0])),
    ]
    arrays.W, arrays.B, arrays.feat_norm_mean = np.array([[1.0, 10.0]]), np.array([0.25]), 40.0
    pooled = np.array([[3.0, 1.0]])
    # fc6: relu([2, -1]) = [2, 0]; fc7: relu([5, 1]) = [5, 1]; scaled by 20 / 40
    np.testing.assert_array_equal(fc_features(pooled, arrays, 7), [[5.0, 1.0]])
    np.testing.assert_allclose(svm_scores(pooled, arrays), [[0.5 * 5 + 0.5 * 10 + 0.25]])
    np.testing.assert_array_equal(fc_features(pooled, arrays, 5), pooled)  # pool5: no fc, no ReLU


def test_decode_has_no_plus_one() -> None:
    boxes1 = np.array([[1.0, 1.0, 10.0, 20.0]])
    out = decode_boxes(np.array([[0.1, 0.0, math.log(2.0), 0.0]]), boxes1)
    # width 9 (not 10): centre 5.5 + 0.9, width 18; height 19, centre 10.5
    np.testing.assert_allclose(out, [[6.4 - 9, 1.0, 6.4 + 9, 20.0]])


def test_nms_uses_plus_one_areas_and_strict_overlap() -> None:
    boxes = np.array([[0, 0, 9, 9], [5, 0, 14, 9], [0, 0, 9, 9], [20, 20, 29, 29]], dtype=float)
    # boxes 0 and 1: intersection 5 x 10 = 50, union 150 -> 1/3 > 0.3: suppressed
    assert reference_nms(boxes, np.array([0.9, 0.8, 0.1, 0.5])) == [0, 3]
    assert reference_nms(boxes, np.array([0.9, 0.8, 0.1, 0.5]), overlap=0.34) == [0, 1, 3]
    # equal scores: the later index first
    assert reference_nms(boxes[[0, 2]], np.array([0.5, 0.5])) == [1]


def test_reference_windows_end_to_end_shapes_and_no_windows() -> None:
    arrays = make_release(3)
    image = np.random.default_rng(1).integers(0, 256, (60, 80, 3)).astype(np.uint8)

    def resize(img: np.ndarray, scale: int) -> np.ndarray:  # nearest, enough for shapes
        h, w = img.shape[:2]
        f = scale / min(h, w)
        rows = np.minimum((np.arange(round(h * f)) / f).astype(int), h - 1)
        cols = np.minimum((np.arange(round(w * f)) / f).astype(int), w - 1)
        return img[rows][:, cols]

    windows = np.array([[0, 0, 79, 59], [10, 10, 30, 25], [40, 5, 41, 6]], dtype=float)
    out = reference_detect_windows(arrays, image, windows, [120, 240], resize)
    assert out.scores.shape == (3, 3) and out.pooled.shape == (3, 200)
    assert out.boxes is not None and out.boxes.shape == (3, 3, 4)
    assert out.scale_index.tolist() == [0, 1, 1]  # big window -> small scale
    assert np.all(out.boxes[..., :2] >= 0) and np.all(out.boxes[..., 2] <= 79)
    empty = reference_detect_windows(arrays, image, np.zeros((0, 4)), [120], resize)
    assert empty.scores.shape == (0, 3)
