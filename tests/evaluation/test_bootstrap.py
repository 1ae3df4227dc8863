"""The paired bootstrap's mAP of a resample equals the VOC matcher on copied images."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from app.data.voc import VocAnnotation
from app.evaluation.bootstrap import detection_outcomes, paired_bootstrap, weighted_map
from app.evaluation.voc_ap import evaluate_detections

CLASSES = ["a", "b", "c"]


def _random_set(
    seed: int, images: int = 12
) -> tuple[dict[str, VocAnnotation], list[dict[str, Any]]]:
    """Images with 0-4 boxes (some difficult) and detections near them or anywhere."""
    rng = np.random.default_rng(seed)
    annotations, detections = {}, []
    for k in range(images):
        image_id = f"{k:03d}"
        n = int(rng.integers(0, 5))
        xy = rng.uniform(0, 150, (n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(10, 50, (n, 2))], axis=1)
        labels = [str(rng.choice(CLASSES)) for _ in range(n)]
        annotations[image_id] = VocAnnotation(
            image_id,
            200,
            200,
            boxes.astype(np.float32),
            labels,
            rng.random(n) < 0.15,
            np.zeros(n, bool),
        )
        for box, label in zip(boxes, labels, strict=True):  # near hits, duplicates and wrong labels
            for _ in range(int(rng.integers(0, 3))):
                jitter = box + rng.normal(0, 4, 4)
                wrong = str(rng.choice(CLASSES)) if rng.random() < 0.2 else label
                detections.append(_det(image_id, wrong, float(rng.random()), jitter))
        for _ in range(int(rng.integers(0, 4))):  # background
            x, y = rng.uniform(0, 150, 2)
            label = str(rng.choice(CLASSES))
            detections.append(_det(image_id, label, float(rng.random()), [x, y, x + 20, y + 20]))
    return annotations, detections


def _det(image_id: str, label: str, score: float, box: Any) -> dict[str, Any]:
    x1, y1, x2, y2 = (float(v) for v in np.clip(np.asarray(box, np.float64), 0, 199))
    return {
        "image_id": image_id,
        "label": label,
        "score": score,
        "box": [x1, y1, max(x1, x2), max(y1, y2)],
    }


def _copied(
    annotations: dict[str, VocAnnotation], detections: list[dict[str, Any]], weights: np.ndarray
) -> tuple[dict[str, VocAnnotation], list[dict[str, Any]]]:
    """The slow reference: image ``k`` copied ``weights[k]`` times under new ids."""
    ids = list(annotations)
    copied, dets = {}, []
    for k, image_id in enumerate(ids):
        for c in range(weights[k]):
            a = annotations[image_id]
            new_id = f"{image_id}#{c}"
            copied[new_id] = VocAnnotation(
                new_id, a.width, a.height, a.boxes, a.labels, a.difficult, a.truncated
            )
    for det in detections:
        k = ids.index(det["image_id"])
        dets.extend({**det, "image_id": f"{det['image_id']}#{c}"} for c in range(weights[k]))
    return copied, dets


@pytest.mark.parametrize("seed", range(6))
def test_weighted_map_equals_the_matcher_on_copied_images(seed: int) -> None:
    annotations, detections = _random_set(seed)
    outcomes = detection_outcomes(detections, annotations, CLASSES)
    ones = np.ones(len(annotations), np.int64)
    assert weighted_map(outcomes, ones) == pytest.approx(
        evaluate_detections(detections, annotations, CLASSES).map, nan_ok=True
    )
    rng = np.random.default_rng(100 + seed)
    for _ in range(5):
        n = len(annotations)
        weights = np.bincount(rng.integers(0, n, n), minlength=n)
        copied, dets = _copied(annotations, detections, weights)
        expected = evaluate_detections(dets, copied, CLASSES).map
        assert weighted_map(outcomes, weights) == pytest.approx(expected, abs=1e-12, nan_ok=True)


def test_identical_detectors_differ_by_nothing() -> None:
    annotations, detections = _random_set(7, images=20)
    result = paired_bootstrap(detections, detections, annotations, CLASSES, resamples=50)
    assert result.difference == 0.0 and result.sd == 0.0 and result.b_better == 0.0
    assert result.map_a == result.map_b and not math.isnan(result.map_a)


def test_a_detector_without_false_positives_is_better_on_every_resample() -> None:
    annotations, detections = _random_set(8, images=40)
    a = detection_outcomes(detections, annotations, CLASSES)
    # b keeps exactly a's true positives (found by the matcher), so it never ranks a miss first
    matched = evaluate_detections(detections, annotations, CLASSES).per_class.values()
    keep = {int(i) for cls in matched for i in cls.indices[cls.tp]}
    better = [d for i, d in enumerate(detections) if i in keep]
    result = paired_bootstrap(detections, better, annotations, CLASSES, resamples=200, seed=3)
    assert result.difference > 0 and result.low >= 0 and result.b_better > 0.9
    assert result.map_a == pytest.approx(weighted_map(a, np.ones(len(annotations), np.int64)))
    assert result.resamples == 200 and result.images == 40


def test_the_draws_are_seeded() -> None:
    annotations, detections = _random_set(9, images=30)
    worse = [d for d in detections if d["score"] > 0.3]
    first = paired_bootstrap(detections, worse, annotations, CLASSES, resamples=30, seed=1)
    again = paired_bootstrap(detections, worse, annotations, CLASSES, resamples=30, seed=1)
    other = paired_bootstrap(detections, worse, annotations, CLASSES, resamples=30, seed=2)
    assert first == again and first.sd != other.sd


def test_too_few_resamples_is_an_error() -> None:
    annotations, detections = _random_set(0)
    with pytest.raises(ValueError, match="at least 2 resamples"):
        paired_bootstrap(detections, detections, annotations, CLASSES, resamples=1)
