"""Where a detector's false positives come from: a simplified Hoiem-style breakdown.

For each class, the detections that shape its AP most, the first ``npos`` by score (as many as
the class has objects), are counted as *correct* (the true positives of
:func:`~app.evaluation.voc_ap.evaluate_detections`) or put in one kind of false positive, by
the first rule that holds:

- ``duplicate``: IoU >= the matching threshold with a box of the class already claimed;
- ``localisation``: best IoU with a box of the class in [0.1, threshold);
- ``confusion``: IoU >= 0.1 with a box of another class;
- ``background``: anything else (clutter, texture, empty image regions).

Detections ignored by the AP (matched to a difficult box) are not ranked here either.
IoUs use the VOC +1 convention of :func:`~app.evaluation.voc_ap.voc_iou`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from app.data.voc import VocAnnotation
from app.evaluation.voc_ap import EvaluationResult, voc_iou

#: The kinds of false positive, in the order their rules are tried.
FALSE_POSITIVE_KINDS = ("duplicate", "localisation", "confusion", "background")
#: IoU from which a window counts as touching an object (localisation and confusion).
TOUCH_IOU = 0.1


def false_positive_kind(
    box: np.ndarray, annotation: VocAnnotation, label: str, iou_threshold: float
) -> str:
    """The kind of a false positive of class ``label`` at ``box`` (module docstring)."""
    labels = np.asarray(annotation.labels)
    same = labels == label
    if same.any():
        best = float(voc_iou(box, annotation.boxes[same]).max())
        if best >= iou_threshold:
            return "duplicate"
        if best >= TOUCH_IOU:
            return "localisation"
    if (~same).any() and float(voc_iou(box, annotation.boxes[~same]).max()) >= TOUCH_IOU:
        return "confusion"
    return "background"


def false_positive_breakdown(
    result: EvaluationResult,
    detections: Sequence[Mapping[str, Any]],
    annotations: Mapping[str, VocAnnotation],
) -> dict[str, dict[str, int]]:
    """``{class: {"ranked", "correct", <kind>...}}`` plus ``"all"``, the sum over classes.

    ``result`` must come from ``evaluate_detections(detections, annotations, ...)``: its
    per-class indices point into ``detections``.
    """
    keys = ("ranked", "correct", *FALSE_POSITIVE_KINDS)
    breakdown: dict[str, dict[str, int]] = {}
    for label, r in result.per_class.items():
        counts = dict.fromkeys(keys, 0)
        for rank in range(min(r.npos, len(r.tp))):
            counts["ranked"] += 1
            if r.tp[rank]:
                counts["correct"] += 1
                continue
            det = detections[int(r.indices[rank])]
            box = np.asarray(det["box"], dtype=np.float64)
            annotation = annotations[det["image_id"]]
            counts[false_positive_kind(box, annotation, label, result.iou_threshold)] += 1
        breakdown[label] = counts
    breakdown["all"] = {key: sum(c[key] for c in breakdown.values()) for key in keys}
    return breakdown
