"""Platt scaling: a per-class sigmoid from raw SVM score to the probability of a true positive.

Fitted on the detections of the val split (after NMS), labelled true or false positive with
the VOC rule at IoU 0.5 (difficult matches left out), so ``confidence`` means what a user
expects: about the fraction of such detections that are right.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from torchvision.ops import box_iou


def fit_platt(scores: np.ndarray, is_true: np.ndarray) -> tuple[float, float]:
    """``(a, b)`` with ``P(true | s) = sigmoid(a * s + b)``; ``(2, 0)`` when a side is empty."""
    if len(scores) == 0 or is_true.all() or not is_true.any():
        return 2.0, 0.0
    model = LogisticRegression(C=1e4)
    model.fit(scores.reshape(-1, 1), is_true.astype(int))
    return float(model.coef_[0, 0]), float(model.intercept_[0])


def match_detections(
    boxes: np.ndarray,
    scores: np.ndarray,
    gt: np.ndarray,
    difficult: np.ndarray,
    iou_threshold: float = 0.5,
) -> np.ndarray:
    """VOC-style greedy matching of one class's detections in one image.

    Args:
        boxes (ndarray[N, 4]), scores (ndarray[N]): the detections.
        gt (ndarray[G, 4]), difficult (ndarray[G] bool): the ground truth.

    Returns:
        ndarray[N] int8: 1 true positive, 0 false positive, -1 ignored (matched a difficult box).
    """
    out = np.zeros(len(boxes), dtype=np.int8)
    if len(gt) == 0 or len(boxes) == 0:
        return out
    iou = box_iou(
        torch.as_tensor(boxes, dtype=torch.float32), torch.as_tensor(gt, dtype=torch.float32)
    ).numpy()
    claimed = np.zeros(len(gt), dtype=bool)
    for i in np.argsort(-scores, kind="stable"):
        j = int(iou[i].argmax())
        if iou[i, j] >= iou_threshold:
            if difficult[j]:
                out[i] = -1
            elif not claimed[j]:
                claimed[j] = True
                out[i] = 1
    return out
