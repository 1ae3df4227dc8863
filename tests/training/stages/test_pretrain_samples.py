"""Stage 1's samples: which objects are cropped, how scene views look, background windows."""

from __future__ import annotations

import numpy as np
import pytest

from app.training.stages.pretrain_samples import (
    BACKGROUND_MAX_COVER,
    BACKGROUND_MAX_IOU,
    BACKGROUND_MIN_SIDE,
    background_windows,
    holds_no_object,
    samples_of_image,
)


def test_difficult_objects_are_left_out_and_many_objects_give_no_scene_view() -> None:
    boxes = np.array([[10, 10, 49, 49], [60, 60, 99, 79], [0, 0, 9, 9]], dtype=np.float32)
    samples = samples_of_image(7, (100, 120), boxes, [0, 3, 5], np.array([0, 0, 1]), 4)
    assert [(s.image_index, s.class_id, s.context) for s in samples] == [
        (7, 0, None),
        (7, 3, None),
    ]
    assert samples[1].box == (60.0, 60.0, 99.0, 79.0)


def test_a_lone_object_adds_scene_views_at_its_share_of_the_image() -> None:
    boxes = np.array([[100, 50, 139, 79]], dtype=np.float32)  # 40 x 30 px in a 200 x 300 image
    samples = samples_of_image(0, (200, 300), boxes, [2], np.array([0]), 3)
    assert len(samples) == 4
    assert samples[0].context is None
    assert all(s.context == 40 / 200 for s in samples[1:])
    assert all(s.class_id == 2 and s.box == samples[0].box for s in samples)


def test_a_lone_object_filling_the_image_caps_the_share() -> None:
    boxes = np.array([[0, 0, 299, 199]], dtype=np.float32)
    (_, scene) = samples_of_image(0, (200, 300), boxes, [1], np.array([0]), 1)
    assert scene.context == 0.95


def _holds_no_object_by_hand(window: tuple[float, ...], boxes: np.ndarray) -> bool:
    """The background test written out, one object at a time."""
    x1, y1, x2, y2 = window
    for bx1, by1, bx2, by2 in boxes.tolist():
        iw = max(0.0, min(x2, bx2) - max(x1, bx1))
        ih = max(0.0, min(y2, by2) - max(y1, by1))
        area = (bx2 - bx1) * (by2 - by1)
        if iw * ih >= BACKGROUND_MAX_COVER * area:
            return False
        if iw * ih / ((x2 - x1) * (y2 - y1) + area - iw * ih) >= BACKGROUND_MAX_IOU:
            return False
    return True


def test_holds_no_object_matches_the_test_written_out() -> None:
    rng = np.random.default_rng(5)
    boxes = np.array([[20, 30, 79, 89], [150, 40, 189, 79], [100, 150, 259, 229]], np.float32)
    corners = rng.uniform(0, 300, (400, 2))
    windows = np.concatenate([corners, corners + rng.uniform(5, 200, (400, 2))], axis=1)
    windows = np.concatenate([windows, boxes, [[25, 35, 75, 85]]])  # objects, one inside one
    got = holds_no_object(windows, boxes)
    expected = [_holds_no_object_by_hand(tuple(w), boxes) for w in windows.tolist()]
    assert got.tolist() == expected
    assert 0 < sum(expected) < len(expected) and not any(expected[-4:])


def test_background_windows_from_proposals_are_proposals_that_hold_no_object() -> None:
    boxes = np.array([[20, 30, 79, 89], [150, 40, 189, 79]], np.float32)
    fine = [[200, 100, 260, 150], [0, 120, 40, 200], [90, 0, 140, 30]]
    candidates = np.array(
        [
            *fine,
            [20, 30, 79, 89],  # an object
            [10, 20, 90, 100],  # holds an object whole
            [200, 200, 210, 210],  # smaller than BACKGROUND_MIN_SIDE
        ],
        np.float32,
    )
    picked = background_windows(np.random.default_rng(0), (240, 320), boxes, 2, candidates)
    assert len(picked) == 2 and len(set(picked)) == 2
    assert {tuple(w) for w in picked} <= {tuple(map(float, w)) for w in fine}
    every = background_windows(np.random.default_rng(0), (240, 320), boxes, 10, candidates)
    assert sorted(every) == sorted(tuple(map(float, w)) for w in fine)
    again = background_windows(np.random.default_rng(0), (240, 320), boxes, 2, candidates)
    assert again == picked
    assert background_windows(np.random.default_rng(0), (240, 320), boxes, 2, candidates[3:]) == []


def test_background_windows_hold_no_object() -> None:
    """Every window is a square inside the image, overlaps each object with IoU < 0.3 and
    covers less than half of it, so no whole object hides in a background sample."""
    boxes = np.array([[20, 30, 79, 89], [150, 40, 189, 79], [100, 150, 259, 229]], np.float32)
    windows = background_windows(np.random.default_rng(3), (240, 320), boxes, 200)
    assert len(windows) > 50
    for x1, y1, x2, y2 in windows:
        assert np.isclose(x2 - x1, y2 - y1) and x2 - x1 >= BACKGROUND_MIN_SIDE
        assert x1 >= 0 and y1 >= 0 and x2 <= 320 and y2 <= 240
        assert _holds_no_object_by_hand((x1, y1, x2, y2), boxes)


def test_background_windows_are_reproducible_and_need_room() -> None:
    boxes = np.array([[10, 10, 50, 50]], np.float32)
    a = background_windows(np.random.default_rng(1), (100, 120), boxes, 4)
    b = background_windows(np.random.default_rng(1), (100, 120), boxes, 4)
    assert a == b and len(a) == 4
    assert background_windows(np.random.default_rng(1), (20, 120), boxes, 4) == []


def test_background_samples_are_the_extra_class_cropped_exactly() -> None:
    boxes = np.array([[10, 10, 49, 49]], dtype=np.float32)
    samples = samples_of_image(
        2,
        (200, 300),
        boxes,
        [1],
        np.array([0]),
        0,
        background=3,
        background_class=6,
        rng=np.random.default_rng(0),
    )
    background = [s for s in samples if s.class_id == 6]
    assert len(background) == 3 and len(samples) == 4
    assert all(s.context == 1.0 and s.image_index == 2 for s in background)
    with pytest.raises(ValueError, match="rng"):
        samples_of_image(0, (200, 300), boxes, [1], np.array([0]), 0, background=1)
