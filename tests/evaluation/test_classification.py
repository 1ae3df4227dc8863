"""Whole-image classification accuracy: which images count, per-class and per-share tallies."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from app.data.voc import VocAnnotation
from app.evaluation.classification import classification_accuracy, share_bin
from app.inference.detector import Prediction


def _annotation(image_id: str, boxes: list[list[float]], labels: list[str], hard: list[bool]):
    return VocAnnotation(
        image_id=image_id,
        width=200,
        height=100,
        boxes=np.array(boxes, dtype=np.float32).reshape(-1, 4),
        labels=labels,
        difficult=np.array(hard, dtype=bool),
        truncated=np.zeros(len(labels), dtype=bool),
    )


class _Dataset:
    """Four images: two count (one object each), two do not (two objects; one difficult)."""

    def __init__(self) -> None:
        self.annotations = {
            "a": _annotation("a", [[0, 0, 4, 4]], ["circle"], [False]),  # share 0.05
            "b": _annotation("b", [[0, 0, 49, 9]], ["star"], [False]),  # share 0.5
            "c": _annotation("c", [[0, 0, 9, 9], [20, 20, 29, 29]], ["star", "star"], [0, 0]),
            "d": _annotation("d", [[0, 0, 9, 9]], ["circle"], [True]),
        }
        self.ids = list(self.annotations)

    def annotation(self, image_id: str) -> VocAnnotation:
        return self.annotations[image_id]

    def load_rgb(self, image_id: str) -> np.ndarray:
        return np.full((100, 200, 3), ord(image_id), dtype=np.uint8)


class _Detector:
    """Says "star" for every image, and records what it was shown."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def classify(
        self,
        images: list[np.ndarray],
        top_k: int,
        size: int | None,
        views: str,
        proposals: list[np.ndarray] | None,
    ) -> list[list[Prediction]]:
        assert (size, views) == (96, "multi"), "the options reach the detector"
        assert proposals is None, "windows only for views='detect'"
        self.seen += [int(image[0, 0, 0]) for image in images]
        return [[Prediction(label="star", class_id=3, probability=0.9)] for _ in images]


def test_only_single_object_images_count_and_are_tallied() -> None:
    detector = _Detector()
    dataset: Any = _Dataset()
    result = classification_accuracy(
        detector,  # type: ignore[arg-type]
        dataset,
        size=96,
        views="multi",
        progress=False,
    )
    assert detector.seen == [ord("a"), ord("b")]
    assert result["images"] == 2
    assert result["accuracy"] == 0.5
    assert result["per_class"] == {"circle": 0.0, "star": 1.0}
    assert result["by_share"] == {
        "0.0-0.1": {"images": 1, "accuracy": 0.0},
        ">=0.4": {"images": 1, "accuracy": 1.0},
    }


@pytest.mark.parametrize(
    ("share", "name"),
    [(0.0, "0.0-0.1"), (0.0999, "0.0-0.1"), (0.1, "0.1-0.2"), (0.39, "0.2-0.4"), (0.4, ">=0.4")],
)
def test_share_bins_are_closed_below(share: float, name: str) -> None:
    assert share_bin(share) == name
