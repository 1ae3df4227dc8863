"""``draw_detections`` on small hand-made images: where the colour goes, and where it does not."""

from __future__ import annotations

import numpy as np
import pytest

from app.inference.draw import PALETTE, draw_detections, line_thickness
from app.inference.results import Detection

GREY = 128


def grey(height: int = 60, width: int = 80) -> np.ndarray:
    return np.full((height, width, 3), GREY, np.uint8)


def detection(class_id: int, confidence: float, box: tuple[float, ...]) -> Detection:
    return Detection(f"c{class_id}", class_id, 0.0, confidence, box)  # type: ignore[arg-type]


def test_box_edges_take_the_class_colour_and_nothing_else_changes_around_them() -> None:
    image = grey()
    drawn = draw_detections(image, [detection(1, 0.9, (10.2, 20.0, 49.6, 44.9))])  # -> 10..50
    colour = list(PALETTE[1])
    assert drawn[45, 10:51].tolist() == [colour] * 41, "bottom edge"
    assert drawn[21:46, 10].tolist() == [colour] * 25, "left edge"
    assert drawn[21:46, 50].tolist() == [colour] * 25, "right edge"
    assert (drawn[21:45, 11:50] == GREY).all(), "inside the box"
    assert (drawn[46:] == GREY).all(), "below the box"
    assert (drawn[:, :10] == GREY).all(), "left of the box"
    assert (drawn[20:, 51:] == GREY).all(), "right of the box (the label sits above it)"
    assert (drawn[:20] != GREY).any(axis=2).any(), "the label bar above the box"
    assert (image == GREY).all(), "the input is not drawn on"


def test_no_detections_give_an_equal_copy() -> None:
    image = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    drawn = draw_detections(image, [])
    assert drawn is not image and drawn.dtype == np.uint8
    np.testing.assert_array_equal(drawn, image)


def test_colours_cycle_through_the_palette_by_class_id() -> None:
    box = (5.0, 30.0, 40.0, 50.0)
    cycled = draw_detections(grey(), [detection(1 + len(PALETTE), 0.5, box)])
    assert cycled[50, 5:41].tolist() == [list(PALETTE[1])] * 36


def test_the_most_confident_detection_is_drawn_on_top() -> None:
    # The two boxes share their bottom edge from x = 30 to 50; the confident one is listed
    # first, so drawing in list order would leave the other one's colour there.
    confident = detection(0, 0.9, (10.0, 20.0, 50.0, 45.0))
    doubtful = detection(2, 0.4, (30.0, 30.0, 70.0, 45.0))
    drawn = draw_detections(grey(), [confident, doubtful])
    assert drawn[45, 30:51].tolist() == [list(PALETTE[0])] * 21
    assert drawn[45, 51:71].tolist() == [list(PALETTE[2])] * 20


@pytest.mark.parametrize(
    ("height", "width", "expected"), [(60, 80, 1), (600, 400, 2), (800, 1200, 3)]
)
def test_line_thickness_grows_with_the_longer_side(height: int, width: int, expected: int) -> None:
    assert line_thickness(height, width) == expected
