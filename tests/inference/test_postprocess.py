"""``postprocess``: hand-worked cases, one rule each (NMS, clipping, thresholds, caps)."""

from __future__ import annotations

import math

import pytest
import torch

from app.inference.postprocess import PostprocessOptions, postprocess
from app.inference.results import Detection, DetectOptions
from app.model.config import DetectionConfig

CLASSES = ["a", "b"]
OPTIONS = PostprocessOptions(min_score=-10.0, nms_iou=0.3, max_per_class=100)


def run(
    windows: list[list[float]],
    scores: list[list[float]],
    confidences: list[list[float]] | None = None,
    deltas: torch.Tensor | None = None,
    image_size: tuple[int, int] = (100, 100),
    options: PostprocessOptions = OPTIONS,
) -> list[Detection]:
    """Zero deltas (each box is its window) unless given; confidences default to the scores."""
    n = len(windows)
    return postprocess(
        torch.tensor(windows, dtype=torch.float32).reshape(n, 4),
        torch.tensor(scores, dtype=torch.float32).reshape(n, len(CLASSES)),
        torch.tensor(confidences if confidences is not None else scores).reshape(n, len(CLASSES)),
        torch.zeros(n, len(CLASSES), 4) if deltas is None else deltas,
        image_size,
        CLASSES,
        options,
    )


def test_nms_keeps_the_higher_of_two_overlapping_boxes_of_one_class() -> None:
    # IoU of the two windows: 81 / (100 + 100 - 81) = 0.68 > 0.3; class "b" only scores on
    # the first window, below the suppression threshold of every other class (-10).
    found = run(
        [[0, 0, 10, 10], [1, 1, 11, 11]],
        [[0.2, 0.1], [0.4, -20.0]],
    )
    assert found == [
        Detection("a", 0, pytest.approx(0.4), pytest.approx(0.4), (1.0, 1.0, 11.0, 11.0)),
        Detection("b", 1, pytest.approx(0.1), pytest.approx(0.1), (0.0, 0.0, 10.0, 10.0)),
    ]


def test_nms_threshold_is_an_option() -> None:
    windows, scores = [[0, 0, 10, 10], [1, 1, 11, 11]], [[0.2, -20.0], [0.4, -20.0]]
    assert len(run(windows, scores)) == 1
    loose = PostprocessOptions(min_score=-10.0, nms_iou=0.7, max_per_class=100)  # 0.68 < 0.7
    assert len(run(windows, scores, options=loose)) == 2


def test_boxes_are_decoded_then_clipped_to_the_image() -> None:
    # Window [0, 0, 10, 10] (centre 5, size 10) with tx = 0.5, ty = 0, tw = th = log 2:
    # centre (10, 5), size 20, so [0, -5, 20, 15] before clipping; the image is 12 high and
    # 16 wide (x <= 15, y <= 11).
    deltas = torch.zeros(1, 2, 4)
    deltas[0, 0] = torch.tensor([0.5, 0.0, math.log(2.0), math.log(2.0)])
    [found] = run([[0, 0, 10, 10]], [[1.0, -20.0]], deltas=deltas, image_size=(12, 16))
    assert found.box == pytest.approx((0.0, 0.0, 15.0, 11.0))
    [outside] = run([[-5, -3, 20, 30]], [[1.0, -20.0]], image_size=(20, 15))
    assert outside.box == (0.0, 0.0, 14.0, 19.0)


def test_min_confidence_drops_and_sorting_follows_confidence() -> None:
    windows = [[0, 0, 9, 9], [20, 20, 29, 29], [40, 40, 49, 49]]
    scores = [[3.0, -20.0], [2.0, -20.0], [1.0, -20.0]]
    confidences = [[0.3, 0.0], [0.9, 0.0], [0.6, 0.0]]
    found = run(windows, scores, confidences)
    assert [d.confidence for d in found] == pytest.approx([0.9, 0.6, 0.3])
    kept = run(windows, scores, confidences, options=_with(min_confidence=0.5))
    assert [d.box[0] for d in kept] == [20.0, 40.0]


def test_class_filter_keeps_only_the_named_classes() -> None:
    windows = [[0, 0, 9, 9], [20, 20, 29, 29]]
    scores = [[1.0, 0.5], [0.2, 0.7]]
    assert {d.class_id for d in run(windows, scores)} == {0, 1}
    only_b = run(windows, scores, options=_with(class_ids=(1,)))
    assert [(d.label, d.box[0]) for d in only_b] == [("b", 20.0), ("b", 0.0)]


def test_max_detections_keeps_the_most_confident() -> None:
    windows = [[0, 0, 9, 9], [20, 20, 29, 29], [40, 40, 49, 49]]
    scores = [[0.5, -20.0], [0.7, -20.0], [0.1, 0.6]]
    found = run(windows, scores, options=_with(max_detections=2))
    assert [(d.label, d.confidence) for d in found] == [
        ("a", pytest.approx(0.7)),
        ("b", pytest.approx(0.6)),
    ]


def test_max_per_class_caps_each_class_by_score() -> None:
    windows = [[0, 0, 9, 9], [20, 20, 29, 29], [40, 40, 49, 49]]
    scores = [[0.5, 0.1], [0.7, -20.0], [0.6, -20.0]]
    found = run(windows, scores, options=_with(max_per_class=1))
    assert [(d.label, d.box[0]) for d in found] == [("a", 20.0), ("b", 0.0)]


def test_windows_below_min_score_are_not_candidates() -> None:
    found = run(
        [[0, 0, 9, 9], [20, 20, 29, 29]], [[0.5, -1.0], [-0.5, 2.0]], options=_with(min_score=0.0)
    )
    assert [(d.label, d.box[0]) for d in found] == [("b", 20.0), ("a", 0.0)]


def test_no_windows_give_no_detections() -> None:
    assert run([], []) == []


def test_resolve_fills_what_the_request_leaves_to_the_manifest() -> None:
    config = DetectionConfig(nms_iou=0.4, max_per_class=7, min_score=-1.0)
    default = PostprocessOptions.resolve(DetectOptions(), config)
    assert default == PostprocessOptions(min_score=-1.0, nms_iou=0.4, max_per_class=7)
    explicit = DetectOptions(
        nms_iou=0.6, max_per_class=2, min_confidence=0.5, class_ids=(1,), max_detections=3
    )
    assert PostprocessOptions.resolve(explicit, config) == PostprocessOptions(
        min_score=-1.0,
        nms_iou=0.6,
        max_per_class=2,
        min_confidence=0.5,
        class_ids=(1,),
        max_detections=3,
    )


def _with(**changes: object) -> PostprocessOptions:
    values = {"min_score": -10.0, "nms_iou": 0.3, "max_per_class": 100, **changes}
    return PostprocessOptions(**values)  # type: ignore[arg-type]


def test_without_min_score_every_window_is_a_candidate() -> None:
    found = run(
        [[0, 0, 9, 9], [20, 20, 29, 29]],
        [[-50.0, -1e6], [-3.0, 2.0]],
        confidences=[[0.5, 0.5], [0.5, 0.5]],
        options=_with(min_score=None),
    )
    assert sorted((d.label, d.score) for d in found) == [
        ("a", -50.0),
        ("a", -3.0),
        ("b", -1e6),
        ("b", 2.0),
    ]


def test_inclusive_nms_measures_boxes_as_pixel_sets() -> None:
    # IoU of these two: 4 * 10 / (90 + 90 - 40) = 0.286 with widths x2 - x1; with the +1 areas
    # 5 * 10 / (100 + 100 - 50) = 0.333, above 0.3: only then is the lower one suppressed
    windows = [[0, 0, 9, 9], [5, 0, 14, 9]]
    scores = [[0.9, -20.0], [0.8, -20.0]]
    exclusive = run(windows, scores, options=_with(min_score=0.0))
    inclusive = run(windows, scores, options=_with(min_score=0.0, nms_extent="inclusive"))
    assert [d.box[0] for d in exclusive] == [0.0, 5.0]
    assert [d.box[0] for d in inclusive] == [0.0]


def test_resolve_takes_the_manifests_nms_extent_and_no_threshold() -> None:
    config = DetectionConfig(min_score=None, nms_extent="inclusive")
    resolved = PostprocessOptions.resolve(DetectOptions(), config)
    assert resolved.min_score is None and resolved.nms_extent == "inclusive"
