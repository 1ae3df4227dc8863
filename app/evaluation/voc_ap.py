"""Pascal VOC 2007 detection metric: 11-point interpolated average precision (docs/model.md §8).

Rules, per class:

- ``npos`` = number of non-difficult ground-truth boxes of the class.
- Detections are sorted by descending score; ties keep their input order (stable sort).
- Each detection is compared with every ground-truth box of its class in its image (difficult
  ones included) by :func:`voc_iou` and takes the best one. If that IoU is
  ``>= IOU_THRESHOLD`` (:data:`MATCH_INCLUSIVE`: the devkit's ``>=``, not py-faster-rcnn's
  ``>``): a difficult ground truth makes the detection *ignored* (neither true nor false
  positive, and left out of the precision-recall arrays); an unclaimed one makes it a true
  positive and claims it; a claimed one (a duplicate) makes it a false positive. Below the
  threshold it is a false positive.
- AP = mean over recall thresholds ``t = i / 10, i = 0..10`` of the largest precision at
  recall ``>= t`` (0 when no point reaches ``t``). The thresholds are computed as ``i / 10`` so
  that a recall of exactly 3/10 counts for ``t = 0.3`` (``np.arange(0, 1.1, 0.1)`` gives
  0.30000000000000004 there).
- A class with ground truth but no detection has AP 0. A class with ``npos == 0`` has an
  undefined AP (NaN, ``None`` in JSON) and is left out of the mAP; the mAP is the mean AP of
  the classes with ``npos > 0`` (NaN when there is none).

Box convention: inputs are the project's 0-based float pixels ``(x1, y1, x2, y2)`` where a box
over pixel columns 0..9 has ``x1 = 0, x2 = 9`` (what :class:`~app.data.voc.VocDataset`
returns). The VOC "+1" (inclusive pixel) convention is applied only in :func:`voc_iou`. It is
the devkit's formula applied to 0-based coordinates, which gives the devkit's IoU exactly, as
shifting every coordinate by the same amount does not change an IoU.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.data.voc import VocAnnotation, VocDataset

IOU_THRESHOLD = 0.5
"""Default IoU a detection needs with a ground-truth box to match it."""

MATCH_INCLUSIVE = True
"""A detection matches when IoU >= threshold (VOC devkit ``ovmax >= minoverlap``)."""

RECALL_THRESHOLDS: np.ndarray = np.arange(11) / 10.0
"""The 11 recall levels 0, 0.1, ..., 1 of the VOC 2007 interpolated AP."""


def voc_iou(box: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
    """IoU with the VOC devkit's "+1" inclusive-pixel convention.

    ``inter = (min x2 - max x1 + 1) * (min y2 - max y1 + 1)`` (each factor clamped at 0),
    ``area = (x2 - x1 + 1) * (y2 - y1 + 1)``.

    Args:
        box: np.ndarray[4] ``(x1, y1, x2, y2)``, 0-based pixels.
        gt_boxes: np.ndarray[M, 4], same convention.

    Returns:
        np.ndarray[M] float64 IoU values.
    """
    box = np.asarray(box, np.float64)
    gt = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    iw = np.maximum(np.minimum(gt[:, 2], box[2]) - np.maximum(gt[:, 0], box[0]) + 1.0, 0.0)
    ih = np.maximum(np.minimum(gt[:, 3], box[3]) - np.maximum(gt[:, 1], box[1]) + 1.0, 0.0)
    inter = iw * ih  # [M]
    area_box = (box[2] - box[0] + 1.0) * (box[3] - box[1] + 1.0)
    area_gt = (gt[:, 2] - gt[:, 0] + 1.0) * (gt[:, 3] - gt[:, 1] + 1.0)
    union = area_box + area_gt - inter
    return np.where(union > 0, inter / np.maximum(union, np.finfo(np.float64).tiny), 0.0)


def voc_ap_11point(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC 2007 11-point interpolated average precision.

    Args:
        recall: np.ndarray[D] cumulative recall after each ranked detection.
        precision: np.ndarray[D] cumulative precision, same length.

    Returns:
        mean over ``t in {0, 0.1, ..., 1}`` of ``max(precision[recall >= t])`` (0 if empty).
    """
    recall = np.asarray(recall, np.float64)
    precision = np.asarray(precision, np.float64)
    if recall.shape != precision.shape or recall.ndim != 1:
        raise ValueError(
            f"expected recall and precision of one shape [D], got "
            f"{recall.shape} and {precision.shape}"
        )
    total = 0.0
    for t in RECALL_THRESHOLDS:
        reached = precision[recall >= t]
        total += float(reached.max()) if reached.size else 0.0
    return total / len(RECALL_THRESHOLDS)


@dataclass(frozen=True, eq=False)
class ClassResult:
    """Evaluation of one class.

    Attributes:
        label: class name.
        ap: 11-point AP in [0, 1]; NaN when ``npos == 0``.
        npos: number of non-difficult ground-truth boxes.
        num_detections: detections of the class, ignored ones included.
        num_ignored: detections matched to a difficult ground truth.
        tp: np.ndarray[D] bool, true positive flag of each counted detection, by rank.
        scores: np.ndarray[D] float64 scores of the counted detections, descending.
        precision: np.ndarray[D] float64 cumulative precision.
        recall: np.ndarray[D] float64 cumulative recall (NaN-free: zeros when ``npos == 0``).
        indices: np.ndarray[D] int64, each counted detection's index in the input list.
    """

    label: str
    ap: float
    npos: int
    num_detections: int
    num_ignored: int
    tp: np.ndarray
    scores: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    indices: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no arrays); NaN AP becomes None."""
        return {
            "ap": None if math.isnan(self.ap) else self.ap,
            "npos": self.npos,
            "num_detections": self.num_detections,
            "num_ignored": self.num_ignored,
            "num_tp": int(self.tp.sum()),
            "num_fp": int((~self.tp).sum()),
            "max_recall": float(self.recall[-1]) if self.recall.size and self.npos else 0.0,
        }


@dataclass(frozen=True, eq=False)
class EvaluationResult:
    """VOC 2007 evaluation of a set of detections.

    Attributes:
        classes: class names in class-id order.
        per_class: result of each class, in ``classes`` order.
        map: mean AP over the classes with ``npos > 0`` (NaN when none).
        iou_threshold: the matching IoU used.
        num_images: number of ground-truth images.
    """

    classes: list[str]
    per_class: dict[str, ClassResult] = field(default_factory=dict)
    map: float = math.nan
    iou_threshold: float = IOU_THRESHOLD
    num_images: int = 0

    @property
    def ap(self) -> dict[str, float]:
        """AP of each class (NaN for a class without ground truth)."""
        return {label: r.ap for label, r in self.per_class.items()}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: mAP, per-class AP and counts, and the evaluation settings."""
        return {
            "metric": "VOC2007 11-point AP",
            "iou_threshold": self.iou_threshold,
            "match": ">=" if MATCH_INCLUSIVE else ">",
            "num_images": self.num_images,
            "map": None if math.isnan(self.map) else self.map,
            "ap": {label: r.to_dict()["ap"] for label, r in self.per_class.items()},
            "per_class": {label: r.to_dict() for label, r in self.per_class.items()},
        }


def _validate_detection(index: int, det: Mapping[str, Any]) -> tuple[str, str, float, np.ndarray]:
    try:
        image_id, label, score, box = det["image_id"], det["label"], det["score"], det["box"]
    except (KeyError, TypeError):
        raise ValueError(
            f"detection {index}: expected a mapping with image_id, label, score "
            f"and box, got {det!r}"
        ) from None
    if not isinstance(image_id, str) or not isinstance(label, str):
        raise ValueError(
            f"detection {index}: expected string image_id and label, got {image_id!r} and {label!r}"
        )
    if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
        raise ValueError(f"detection {index}: expected a finite number as score, got {score!r}")
    try:
        array: np.ndarray | None = np.asarray(box, np.float64)
    except (TypeError, ValueError):
        array = None
    if array is None or array.shape != (4,) or not np.isfinite(array).all():
        raise ValueError(
            f"detection {index}: expected box [x1, y1, x2, y2] of 4 finite numbers, got {box!r}"
        )
    if array[2] < array[0] or array[3] < array[1]:
        raise ValueError(f"detection {index}: expected x2 >= x1 and y2 >= y1, got {box!r}")
    return image_id, label, float(score), array


def evaluate_detections(
    detections: Sequence[Mapping[str, Any]],
    annotations: Mapping[str, VocAnnotation] | VocDataset,
    classes: Sequence[str] | None = None,
    iou_threshold: float = IOU_THRESHOLD,
) -> EvaluationResult:
    """Score detections against ground truth with the VOC 2007 rules (module docstring).

    Args:
        detections: items ``{"image_id": str, "label": str, "score": float,
            "box": [x1, y1, x2, y2]}`` in 0-based pixels.
        annotations: ground truth by image id, or a :class:`VocDataset` (all images of its
            split). Images without any detection still count through their ground truth.
        classes: classes to evaluate, in report order; default: the dataset's classes, or the
            sorted labels present in the ground truth.
        iou_threshold: matching IoU (compared with ``>=``).

    Returns:
        The per-class results and the mAP.

    Raises:
        ValueError: a malformed detection, an image id not in ``annotations``, or a label not
            in ``classes``.
    """
    if isinstance(annotations, VocDataset):
        if classes is None:
            classes = annotations.classes
        annotations = annotations.annotations()
    if classes is None:
        classes = sorted({label for a in annotations.values() for label in a.labels})
    classes = list(classes)
    class_set = set(classes)

    by_class: dict[str, list[tuple[int, str, float, np.ndarray]]] = {c: [] for c in classes}
    for index, det in enumerate(detections):
        image_id, label, score, box = _validate_detection(index, det)
        if image_id not in annotations:
            raise ValueError(
                f"detection {index}: image_id {image_id!r} is not in the ground "
                f"truth ({len(annotations)} images)"
            )
        if label not in class_set:
            raise ValueError(f"detection {index}: label {label!r} is not one of {classes}")
        by_class[label].append((index, image_id, score, box))

    per_class = {
        label: _evaluate_class(label, by_class[label], annotations, iou_threshold)
        for label in classes
    }
    aps = [r.ap for r in per_class.values() if r.npos > 0]
    mean_ap = float(np.mean(aps)) if aps else math.nan
    return EvaluationResult(
        classes=classes,
        per_class=per_class,
        map=mean_ap,
        iou_threshold=iou_threshold,
        num_images=len(annotations),
    )


def _evaluate_class(
    label: str,
    dets: list[tuple[int, str, float, np.ndarray]],
    annotations: Mapping[str, VocAnnotation],
    iou_threshold: float,
) -> ClassResult:
    gt: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # image -> (boxes [M, 4], difficult [M])
    npos = 0
    for image_id, ann in annotations.items():
        keep = np.asarray([name == label for name in ann.labels], bool)
        if keep.any():
            gt[image_id] = (ann.boxes[keep].astype(np.float64), ann.difficult[keep].astype(bool))
            npos += int((~ann.difficult[keep]).sum())
    claimed = {image_id: np.zeros(len(boxes), bool) for image_id, (boxes, _) in gt.items()}

    order = sorted(range(len(dets)), key=lambda k: -dets[k][2])  # stable: ties keep input order
    tp: list[bool] = []
    scores: list[float] = []
    indices: list[int] = []
    ignored = 0
    for k in order:
        index, image_id, score, box = dets[k]
        outcome = False  # false positive unless matched below
        if image_id in gt:
            boxes, difficult = gt[image_id]
            ious = voc_iou(box, boxes)
            best = int(np.argmax(ious))
            matched = ious[best] >= iou_threshold if MATCH_INCLUSIVE else ious[best] > iou_threshold
            if matched:
                if difficult[best]:
                    ignored += 1
                    continue
                if not claimed[image_id][best]:
                    claimed[image_id][best] = True
                    outcome = True
        tp.append(outcome)
        scores.append(score)
        indices.append(index)

    tp_array = np.asarray(tp, bool)
    tp_cum = np.cumsum(tp_array, dtype=np.float64)  # [D]
    fp_cum = np.cumsum(~tp_array, dtype=np.float64)  # [D]
    precision = tp_cum / np.maximum(tp_cum + fp_cum, np.finfo(np.float64).eps)
    recall = tp_cum / npos if npos > 0 else np.zeros_like(tp_cum)
    ap = voc_ap_11point(recall, precision) if npos > 0 else math.nan
    return ClassResult(
        label=label,
        ap=ap,
        npos=npos,
        num_detections=len(dets),
        num_ignored=ignored,
        tp=tp_array,
        scores=np.asarray(scores, np.float64),
        precision=precision,
        recall=recall,
        indices=np.asarray(indices, np.int64),
    )


def load_detections_json(path: Path) -> list[dict[str, Any]]:
    """Read detections from a JSON file.

    Format: a JSON list of objects ``{"image_id": "000001", "label": "dog", "score": 0.93,
    "box": [x1, y1, x2, y2]}`` with the box in 0-based pixels of the original image (x2, y2
    inclusive, as the dataset reader returns ground truth). Extra keys are allowed and ignored.

    Returns:
        The detections, each ``{"image_id": str, "label": str, "score": float,
        "box": [float, float, float, float]}``.

    Raises:
        ValueError: the file is not valid JSON or an item breaks the format; the message names
            the file and the item index.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of detections, got {type(data).__name__}")
    out = []
    for index, item in enumerate(data):
        try:
            image_id, label, score, box = _validate_detection(index, item)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        out.append(
            {"image_id": image_id, "label": label, "score": score, "box": [float(v) for v in box]}
        )
    return out
