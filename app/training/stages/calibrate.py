"""Calibration: Platt scaling, a per-class sigmoid from raw SVM score to the probability of a
true positive.

Fitted on the detections of the val split (after NMS), labelled true or false positive with
the VOC rule at IoU 0.5 (difficult matches left out), so ``confidence`` means what a user
expects: about the fraction of such detections that are right.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from torchvision.ops import box_iou
from tqdm import tqdm

from app.data.voc import VocDataset
from app.inference.detector import DetectOptions, Detector
from app.training.workdir import WorkDir


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


def val_outcomes(
    detector: Detector,
    val: VocDataset,
    proposals: dict[str, np.ndarray],
    classes: list[str],
    *,
    progress: bool,
) -> tuple[list[list[float]], list[list[int]]]:
    """Single-scale detections on every image of ``val`` and their :func:`match_detections`
    outcome, detections matching a difficult box left out.

    Returns ``(scores, truth)``: by class index, the raw scores and 1 (true) / 0 (false).
    """
    scores: list[list[float]] = [[] for _ in classes]
    truth: list[list[int]] = [[] for _ in classes]
    for image_id in tqdm(val.ids, desc="calibration (val)", disable=not progress):
        ann = val.annotation(image_id)
        [result] = detector.detect(
            [val.load_rgb(image_id)], [proposals[image_id]], DetectOptions(scales="single")
        )
        for c, name in enumerate(classes):
            found = [d for d in result.detections if d.class_id == c]
            if not found:
                continue
            mine = np.array([label == name for label in ann.labels], dtype=bool)
            outcome = match_detections(
                np.array([d.box for d in found]),
                np.array([d.score for d in found]),
                ann.boxes[mine],
                np.asarray(ann.difficult, dtype=bool)[mine],
            )
            keep = outcome >= 0
            scores[c].extend(np.array([d.score for d in found])[keep].tolist())
            truth[c].extend(outcome[keep].tolist())
    return scores, truth


def calibrate(
    detector: Detector,
    val: VocDataset,
    proposals: dict[str, np.ndarray],
    classes: list[str],
    work: WorkDir,
    *,
    progress: bool,
) -> None:
    """Fit ``detector.net.platt`` (``a``, ``b`` per class) on the val split's detections,
    scored with the identity calibration, and log ``calibration-done``."""
    net = detector.net
    net.platt.a.fill_(1.0)
    net.platt.b.fill_(0.0)
    scores, truth = val_outcomes(detector, val, proposals, classes, progress=progress)
    fitted = {}
    for c, name in enumerate(classes):
        a, b = fit_platt(np.array(scores[c]), np.array(truth[c], dtype=bool))
        net.platt.a[c] = a
        net.platt.b[c] = b
        fitted[name] = {"a": a, "b": b, "detections": len(scores[c]), "true": int(np.sum(truth[c]))}
    work.log_event("calibration-done", platt=fitted)
