"""Proposal recall at IoU thresholds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from app.data.voc import VocAnnotation
from app.evaluation.recall import (
    best_proposal_iou,
    proposal_recall,
    proposal_recall_for_annotations,
)

GT = np.array([[0, 0, 10, 10]], np.float32)


def test_best_iou_per_ground_truth_box() -> None:
    proposals = np.array([[0, 0, 10, 10], [0, 0, 10, 5]], np.float32)
    gt = np.array([[0, 0, 10, 10], [0, 0, 20, 10], [50, 50, 60, 60]], np.float32)
    # Areas (no +1): 100 and 50 vs 100, 200, 100.
    np.testing.assert_allclose(best_proposal_iou(proposals, gt), [1.0, 0.5, 0.0])


def test_recall_at_each_threshold() -> None:
    # A proposal over 60% of the gt box (IoU 0.6): recalled at 0.5, not at 0.7.
    exact = np.array([[0, 0, 10, 10]], np.float32)
    partial = np.array([[0, 0, 10, 6]], np.float32)
    result = proposal_recall([exact, partial], [GT, GT])
    assert result.recall == {0.5: 1.0, 0.7: 0.5}
    assert result.num_gt == 2
    assert result.mean_proposals == 1.0
    np.testing.assert_allclose(result.best_iou, [1.0, 0.6], rtol=1e-6)


def test_difficult_ground_truth_is_left_out() -> None:
    gt = np.array([[0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    result = proposal_recall([GT], [gt], difficult_per_image=[np.array([False, True])])
    assert result.num_gt == 1
    assert result.recall[0.5] == 1.0


def test_zero_proposals_and_zero_ground_truth() -> None:
    result = proposal_recall([np.zeros((0, 4))], [GT])
    assert result.recall == {0.5: 0.0, 0.7: 0.0}
    empty = proposal_recall([GT], [np.zeros((0, 4))])
    assert empty.num_gt == 0
    assert math.isnan(empty.recall[0.5])
    assert empty.to_dict()["recall"] == {"0.5": None, "0.7": None}


def test_accepts_tensors_and_rejects_bad_shapes() -> None:
    result = proposal_recall([torch.tensor([[0.0, 0.0, 10.0, 10.0]])], [torch.from_numpy(GT)])
    assert result.recall[0.7] == 1.0
    with pytest.raises(ValueError, match=r"image 0: expected proposals of shape \[N, 4\]"):
        proposal_recall([np.zeros((2, 3))], [GT])
    with pytest.raises(ValueError, match="as many proposal sets"):
        proposal_recall([GT, GT], [GT])


def test_recall_for_annotations_uses_non_difficult_boxes() -> None:
    ann = VocAnnotation(
        "x",
        100,
        100,
        np.array([[0, 0, 10, 10], [50, 50, 60, 60]], np.float32),
        ["a", "a"],
        np.array([False, True]),
        np.zeros(2, bool),
    )
    result = proposal_recall_for_annotations({"x": GT}, {"x": ann})
    assert result.num_gt == 1 and result.recall[0.5] == 1.0
    with pytest.raises(ValueError, match="no proposals for 1 images"):
        proposal_recall_for_annotations({}, {"x": ann})
