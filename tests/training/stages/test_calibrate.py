"""Calibration: Platt scaling recovers a known logistic; VOC matching by hand."""

from __future__ import annotations

import numpy as np
import pytest

from app.training.stages.calibrate import fit_platt, match_detections


@pytest.mark.parametrize(("a", "b"), [(2.0, -1.0), (0.5, 1.5)])
def test_fit_platt_recovers_a_known_logistic(a: float, b: float) -> None:
    """Scores uniform in [-4, 4], each true with probability sigmoid(a s + b)."""
    rng = np.random.default_rng(0)
    scores = rng.uniform(-4.0, 4.0, 40_000)
    is_true = rng.random(40_000) < 1.0 / (1.0 + np.exp(-(a * scores + b)))
    got_a, got_b = fit_platt(scores, is_true)
    assert got_a == pytest.approx(a, abs=0.08)
    assert got_b == pytest.approx(b, abs=0.08)


def test_the_fitted_confidence_rises_with_the_score() -> None:
    rng = np.random.default_rng(1)
    scores = rng.normal(size=500)
    is_true = scores + rng.normal(scale=0.5, size=500) > 0
    a, b = fit_platt(scores, is_true)
    grid = np.linspace(-3, 3, 50)
    confidence = 1.0 / (1.0 + np.exp(-(a * grid + b)))
    assert a > 0 and np.all(np.diff(confidence) > 0)


@pytest.mark.parametrize(
    "is_true", [np.array([], bool), np.array([True, True]), np.array([False, False, False])]
)
def test_one_sided_outcomes_give_the_default(is_true: np.ndarray) -> None:
    assert fit_platt(np.linspace(0, 1, len(is_true)), is_true) == (2.0, 0.0)


def test_match_detections_by_hand() -> None:
    """Two gt boxes, the second difficult. Detections, by score: 0.9 on gt 0 (true), 0.8 on
    gt 0 again (a duplicate: false), 0.7 on the difficult gt 1 (ignored), 0.6 overlapping
    gt 0 with IoU 50 / 150 = 1/3 (false), and 0.95 listed last, on gt 0 with IoU 0.81: it
    claims gt 0 first, so 0.9 becomes the duplicate."""
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    difficult = np.array([False, True])
    boxes = np.array(
        [[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30], [5, 0, 15, 10], [1, 1, 10, 10]],
        np.float32,
    )
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.95])
    assert match_detections(boxes, scores, gt, difficult).tolist() == [0, 0, -1, 0, 1]
    assert match_detections(boxes[:4], scores[:4], gt, difficult).tolist() == [1, 0, -1, 0]
    assert match_detections(boxes[3:4], scores[3:4], gt, difficult, 0.3).tolist() == [1]


def test_match_detections_without_ground_truth_or_detections() -> None:
    boxes = np.array([[0, 0, 10, 10]], np.float32)
    no_gt = match_detections(boxes, np.array([0.5]), np.zeros((0, 4)), np.zeros(0, bool))
    assert no_gt.tolist() == [0] and no_gt.dtype == np.int8
    none = match_detections(np.zeros((0, 4)), np.zeros(0), boxes, np.array([False]))
    assert none.tolist() == []
