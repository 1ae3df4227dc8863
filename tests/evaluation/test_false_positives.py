"""The false-positive breakdown on a hand-worked case."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from app.data.voc import VocAnnotation
from app.evaluation.false_positives import false_positive_breakdown, false_positive_kind
from app.evaluation.voc_ap import evaluate_detections


def _ann(
    image_id: str, boxes: Sequence[Sequence[float]], labels: list[str], difficult: list[bool]
) -> VocAnnotation:
    n = len(labels)
    return VocAnnotation(
        image_id,
        400,
        400,
        np.asarray(boxes, np.float32).reshape(n, 4),
        labels,
        np.asarray(difficult, bool),
        np.zeros(n, bool),
    )


ANNOTATIONS = {
    "a": _ann("a", [[0, 0, 99, 99], [200, 0, 299, 99]], ["square", "triangle"], [False, False]),
    "b": _ann("b", [[0, 0, 49, 49], [100, 100, 199, 199]], ["square", "square"], [True, False]),
    # Four squares nobody finds: npos = 6, so six counted detections are ranked.
    "c": _ann("c", [[i * 90, 0, i * 90 + 59, 59] for i in range(4)], ["square"] * 4, [False] * 4),
}


def _det(image_id: str, score: float, box: list[float], label: str = "square") -> dict:
    return {"image_id": image_id, "label": label, "score": score, "box": box}


DETECTIONS = [
    _det("a", 0.9, [0, 0, 99, 99]),  # correct
    _det("a", 0.8, [2, 2, 99, 99]),  # duplicate of the claimed square
    _det("b", 0.75, [0, 0, 49, 49]),  # on a difficult square: ignored, not ranked
    _det("a", 0.7, [0, 0, 40, 40]),  # IoU 41^2 / 100^2 = 0.17: localisation
    _det("a", 0.6, [200, 0, 299, 99]),  # on the triangle: confusion
    _det("b", 0.5, [300, 300, 350, 350]),  # on nothing: background
    _det("b", 0.4, [100, 100, 199, 199]),  # correct
    _det("b", 0.3, [300, 0, 350, 50]),  # rank 7 > npos: not ranked
]


def test_each_kind_of_false_positive_on_a_hand_worked_case() -> None:
    result = evaluate_detections(DETECTIONS, ANNOTATIONS, ["square", "triangle"])
    breakdown = false_positive_breakdown(result, DETECTIONS, ANNOTATIONS)
    assert breakdown["square"] == {
        "ranked": 6,
        "correct": 2,
        "duplicate": 1,
        "localisation": 1,
        "confusion": 1,
        "background": 1,
    }
    assert breakdown["triangle"] == dict.fromkeys(breakdown["square"], 0)
    assert breakdown["all"] == breakdown["square"]


def test_only_the_first_npos_detections_are_ranked() -> None:
    fewer = {k: ANNOTATIONS[k] for k in ("a", "b")}  # npos 2: the correct one and the duplicate
    result = evaluate_detections(DETECTIONS, fewer, ["square", "triangle"])
    square = false_positive_breakdown(result, DETECTIONS, fewer)["square"]
    assert (square["ranked"], square["correct"], square["duplicate"]) == (2, 1, 1)


def test_a_class_absent_from_the_image_gives_confusion_or_background() -> None:
    ann = ANNOTATIONS["a"]
    box = np.array([200.0, 0.0, 280.0, 99.0])
    assert false_positive_kind(box, ann, "star", 0.5) == "confusion"  # touches the triangle
    assert false_positive_kind(box + 150, ann, "star", 0.5) == "background"
    # Touching its own class takes precedence over touching another.
    assert false_positive_kind(np.array([60.0, 0, 240, 99]), ann, "square", 0.5) == "localisation"
