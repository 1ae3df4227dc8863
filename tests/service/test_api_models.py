"""What ``/detect`` and the v2 detection model share: the ``classes`` option resolved to class
ids, and the request parameters turned into the detector's options."""

from __future__ import annotations

import pytest

from app.inference.detector import DetectOptions
from app.service.api_models import DetectParams
from app.service.detection_options import UnknownClassError, class_ids_from_names

CLASSES = ["circle", "square", "triangle"]


@pytest.mark.parametrize("names", [None, "", "  "])
def test_no_class_names_means_all_classes(names: str | None) -> None:
    assert class_ids_from_names(names, CLASSES) is None


def test_class_names_become_sorted_unique_ids() -> None:
    assert class_ids_from_names("triangle, circle,triangle", CLASSES) == (0, 2)
    assert class_ids_from_names("square", CLASSES) == (1,)


def test_unknown_class_names_are_all_named() -> None:
    with pytest.raises(UnknownClassError) as caught:
        class_ids_from_names("hexagon,square, star", CLASSES)
    assert str(caught.value) == (
        "unknown class name(s): hexagon, star; expected some of: circle, square, triangle"
    )


def test_detect_options_carry_every_detection_parameter() -> None:
    params = DetectParams(
        scales="multi", nms_iou=0.4, min_confidence=0.2, max_detections=7, classes="square"
    )
    assert params.detect_options((1,)) == DetectOptions(
        scales="multi", nms_iou=0.4, min_confidence=0.2, class_ids=(1,), max_detections=7
    )
    assert DetectParams().detect_options(None) == DetectOptions(min_confidence=0.5)
