"""Whole-image classification accuracy on the images of a VOC split that hold one object.

"Holding one shape" is read literally: exactly one annotated object, not difficult. The
prediction is the top-1 class of full-image SPP classification (``Detector.classify``).
"""

from __future__ import annotations

from typing import Any

from tqdm import tqdm

from app.detector import Detector
from app.training.voc import VocDataset


def single_object_ids(dataset: VocDataset) -> list[str]:
    """Ids of the images with exactly one annotated object, which is not difficult."""
    ids = []
    for image_id in dataset.ids:
        ann = dataset.annotation(image_id)
        if len(ann.labels) == 1 and not bool(ann.difficult[0]):
            ids.append(image_id)
    return ids


def classification_accuracy(
    detector: Detector, dataset: VocDataset, *, progress: bool = True
) -> dict[str, Any]:
    """Top-1 accuracy over :func:`single_object_ids`, overall and per class."""
    correct: dict[str, int] = {}
    total: dict[str, int] = {}
    for image_id in tqdm(single_object_ids(dataset), desc="classify", disable=not progress):
        [label] = dataset.annotation(image_id).labels
        [predictions] = detector.classify([dataset.load_rgb(image_id)], top_k=1)
        total[label] = total.get(label, 0) + 1
        correct[label] = correct.get(label, 0) + int(predictions[0].label == label)
    images = sum(total.values())
    return {
        "images": images,
        "accuracy": sum(correct.values()) / images if images else None,
        "per_class": {label: correct[label] / total[label] for label in sorted(total)},
    }
