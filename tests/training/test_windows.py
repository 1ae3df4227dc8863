"""Labelled training windows: every overlap ``label_windows`` computes against a loop that
takes one window and one ground-truth box at a time."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.data.voc import VocAnnotation
from app.training.windows import label_windows

CLASSES = ["circle", "square", "star"]


def _iou(a: list[float], b: list[float]) -> float:
    """IoU of two ``(x1, y1, x2, y2)`` boxes, areas ``(x2 - x1) * (y2 - y1)``."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _annotation(boxes: list[list[float]], labels: list[str], hard: list[bool]) -> VocAnnotation:
    return VocAnnotation(
        image_id="x",
        width=200,
        height=150,
        boxes=np.array(boxes, np.float32).reshape(-1, 4),
        labels=labels,
        difficult=np.array(hard, bool),
        truncated=np.zeros(len(labels), bool),
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_label_windows_matches_a_window_by_window_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    gt = [[10, 10, 60, 50], [50, 40, 120, 100], [100, 20, 190, 140], [12, 8, 58, 52]]
    labels = ["circle", "square", "circle", "square"]
    hard = [False, False, True, True]  # a difficult circle and a difficult square
    corners = rng.uniform(0, 150, (60, 2))
    proposals = np.concatenate([corners, corners + rng.uniform(4, 80, (60, 2))], axis=1)
    w = label_windows(_annotation(gt, labels, hard), proposals, CLASSES)

    rows = gt + proposals.tolist()
    assert torch.equal(w.boxes, torch.tensor(rows, dtype=torch.float32))
    assert w.is_gt.tolist() == [True] * 4 + [False] * 60
    assert w.gt_difficult.tolist() == hard + [False] * 60
    assert w.gt_class.tolist() == [0, 1, 0, 1] + [-1] * 60
    assert w.gt_labels.tolist() == [0, 1, 0, 1]
    for i, row in enumerate(w.boxes.tolist()):
        ious = [_iou(row, g) for g in gt]
        assert w.max_iou[i].item() == pytest.approx(max(ious), abs=1e-6)
        assert ious[int(w.best_gt[i])] == pytest.approx(max(ious), abs=1e-6)
        for c, name in enumerate(CLASSES):
            easy = [
                v for v, lab, h in zip(ious, labels, hard, strict=True) if lab == name and not h
            ]
            diff = [v for v, lab, h in zip(ious, labels, hard, strict=True) if lab == name and h]
            assert w.class_iou[i, c].item() == pytest.approx(max(easy, default=0.0), abs=1e-6)
            assert w.class_iou_difficult[i, c].item() == pytest.approx(
                max(diff, default=0.0), abs=1e-6
            )


def test_an_image_without_objects_has_only_proposals_overlapping_nothing() -> None:
    proposals = np.array([[0, 0, 10, 10], [5, 5, 30, 40]], np.float32)
    w = label_windows(_annotation([], [], []), proposals, CLASSES)
    assert w.boxes.shape == (2, 4) and not w.is_gt.any()
    assert w.max_iou.tolist() == [0.0, 0.0] and w.best_gt.dtype == torch.long
    assert w.class_iou.shape == (2, 3) and not w.class_iou.any()
    assert w.gt_boxes.shape == (0, 4) and w.gt_labels.shape == (0,)


def test_no_proposals_leave_the_ground_truth_rows() -> None:
    w = label_windows(_annotation([[0, 0, 10, 10]], ["star"], [False]), np.zeros((0, 4)), CLASSES)
    assert w.boxes.tolist() == [[0.0, 0.0, 10.0, 10.0]]
    assert w.max_iou.tolist() == [1.0] and w.class_iou.tolist() == [[0.0, 0.0, 1.0]]
