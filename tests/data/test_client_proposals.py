"""Proposals supplied by the caller: parsing (JSON, shape, finiteness, count) and clipping,
each refusal with a message that names the problem."""

from __future__ import annotations

import json

import numpy as np
import pytest

from app.data.client_proposals import (
    ClientProposalsError,
    clip_client_proposals,
    parse_client_proposals,
)


def test_parses_integers_and_floats_as_given() -> None:
    boxes = parse_client_proposals(b"[[1, 2, 30, 40.5], [0.25, 0, 7, 8]]", 10)
    np.testing.assert_array_equal(boxes, [[1, 2, 30, 40.5], [0.25, 0, 7, 8]])
    assert boxes.dtype == np.float64 and boxes.shape == (2, 4)


def test_an_empty_list_is_zero_boxes() -> None:
    boxes = parse_client_proposals("[]", 10)
    assert boxes.shape == (0, 4)
    assert clip_client_proposals(boxes, 10, 10).shape == (0, 4)


def test_exactly_max_count_boxes_are_allowed() -> None:
    text = json.dumps([[0, 0, 5, 5]] * 3)
    assert len(parse_client_proposals(text, 3)) == 3
    with pytest.raises(ClientProposalsError, match=r"at most 2 boxes allowed .*got 3"):
        parse_client_proposals(text, 2)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[1, 2, 3, 4]", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        ("", "not valid JSON"),
        ('{"boxes": []}', r"expected a JSON array of \[x1, y1, x2, y2\] boxes"),
        ("[1, 2, 3, 4]", r"proposals\[0\]: expected \[x1, y1, x2, y2\], 4 finite numbers"),
        ("[[1, 2, 3, 4], [1, 2, 3]]", r"proposals\[1\]: .*got \[1, 2, 3\]"),
        ("[[1, 2, 3, 4, 5]]", r"proposals\[0\]: .*4 finite numbers"),
        ('[["1", 2, 3, 4]]', r"proposals\[0\]: .*4 finite numbers"),
        ("[[true, 2, 3, 4]]", r"proposals\[0\]: .*4 finite numbers"),
        ("[[null, 2, 3, 4]]", r"proposals\[0\]: .*4 finite numbers"),
        ("[[NaN, 2, 3, 4]]", r"proposals\[0\]: .*4 finite numbers"),
        ("[[0, 0, 3, 4], [1, -Infinity, 3, 4]]", r"proposals\[1\]: .*4 finite numbers"),
        ("[[1e999, 2, 3, 4]]", r"proposals\[0\]: .*4 finite numbers"),
        (f"[[{10**400}, 2, 3, 4]]", r"proposals\[0\]: .*4 finite numbers"),
        ("[[[1], 2, 3, 4]]", r"proposals\[0\]: .*4 finite numbers"),
    ],
)
def test_malformed_text_is_refused_with_its_reason(text: str | bytes, message: str) -> None:
    with pytest.raises(ClientProposalsError, match=message):
        parse_client_proposals(text, 100)


def test_a_long_offending_value_is_shortened_in_the_message() -> None:
    text = json.dumps([[0, 0, 1, 1], list(range(100))])
    with pytest.raises(ClientProposalsError) as caught:
        parse_client_proposals(text, 10)
    assert len(str(caught.value)) < 160 and str(caught.value).endswith("...")


def test_clipping_keeps_x_in_0_to_w_minus_1_and_y_in_0_to_h_minus_1() -> None:
    boxes = np.array([[-5, -1, 200, 50], [10, 20, 30, 40], [0.5, 0.5, 99.5, 79.75]])
    clipped = clip_client_proposals(boxes, width=100, height=80)
    expected = [[0, 0, 99, 50], [10, 20, 30, 40], [0.5, 0.5, 99, 79]]
    np.testing.assert_array_equal(clipped, np.array(expected, np.float32))
    assert clipped.dtype == np.float32
    np.testing.assert_array_equal(boxes[0], [-5, -1, 200, 50])  # the input is left alone


@pytest.mark.parametrize(
    "box",
    [
        [10, 10, 10, 20],  # x2 == x1
        [10, 10, 20, 5],  # y2 < y1
        [120, 0, 150, 10],  # right of the image: x1 = x2 = 99 after clipping
        [0, -30, 10, -1],  # above the image: y1 = y2 = 0 after clipping
    ],
)
def test_a_box_empty_after_clipping_is_refused(box: list[float]) -> None:
    boxes = np.array([[0, 0, 5, 5], box], np.float64)
    with pytest.raises(ClientProposalsError, match=r"proposals\[1\]: .* is empty after clipping "
                       r"to the 100x80 image \(expected x2 > x1 and y2 > y1\)"):  # fmt: skip
        clip_client_proposals(boxes, width=100, height=80)
