"""Whole-image classification accuracy on the images of a VOC split that hold one object.

"Holding one shape" is read literally: exactly one annotated object, not difficult. The
prediction is the top-1 class of full-image SPP classification (``Detector.classify``).
Accuracy is also reported by the object's *share* of the image (its longer side over the
image's shorter side), since full-image classification at a fixed input size depends on it.
"""

from __future__ import annotations

import bisect
import itertools
from typing import Any

import numpy as np
from tqdm import tqdm

from app.data.voc import VocDataset
from app.inference.detector import Detector, ViewMode
from app.ops.boxes import longer_side_share


def single_object_ids(dataset: VocDataset) -> list[str]:
    """Ids of the images with exactly one annotated object, which is not difficult."""
    ids = []
    for image_id in dataset.ids:
        ann = dataset.annotation(image_id)
        if len(ann.labels) == 1 and not bool(ann.difficult[0]):
            ids.append(image_id)
    return ids


#: Lower edges of the share bins of the report (the last bin is open).
SHARE_BINS = (0.0, 0.1, 0.2, 0.4)
SHARE_BIN_NAMES = (
    *(f"{low}-{high}" for low, high in itertools.pairwise(SHARE_BINS)),
    f">={SHARE_BINS[-1]}",
)


def share_bin(share: float) -> str:
    """The name of the :data:`SHARE_BINS` bin holding ``share``, e.g. ``"0.1-0.2"``."""
    return SHARE_BIN_NAMES[max(0, bisect.bisect_right(SHARE_BINS, share) - 1)]


def classification_accuracy(
    detector: Detector,
    dataset: VocDataset,
    *,
    size: int | None = None,
    views: ViewMode = "full",
    proposals: dict[str, np.ndarray] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Top-1 accuracy over :func:`single_object_ids`: overall, per class and per share bin;
    ``size`` overrides the model's ``classify_size``; ``views`` as in ``Detector.classify``
    (``"detect"`` reads each image's windows from ``proposals``)."""
    correct: dict[str, int] = {}
    total: dict[str, int] = {}
    by_share: dict[str, list[int]] = {}
    for image_id in tqdm(single_object_ids(dataset), desc="classify", disable=not progress):
        ann = dataset.annotation(image_id)
        [label] = ann.labels
        image = dataset.load_rgb(image_id)
        windows = [proposals[image_id]] if proposals is not None else None
        [predictions] = detector.classify(
            [image], top_k=1, size=size, views=views, proposals=windows
        )
        hit = int(predictions[0].label == label)
        total[label] = total.get(label, 0) + 1
        correct[label] = correct.get(label, 0) + hit
        share = longer_side_share(ann.boxes[0], ann.height, ann.width)
        by_share.setdefault(share_bin(share), []).append(hit)
    images = sum(total.values())
    return {
        "images": images,
        "accuracy": sum(correct.values()) / images if images else None,
        "per_class": {label: correct[label] / total[label] for label in sorted(total)},
        "by_share": {
            name: {"images": len(hits), "accuracy": sum(hits) / len(hits)}
            for name in SHARE_BIN_NAMES
            if (hits := by_share.get(name))
        },
    }
