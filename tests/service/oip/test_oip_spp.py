"""The service's two models as protocol models: parameters, classes, arrays, limits."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from app.service.detection_options import DetectionParams as DetectParams
from app.service.oip.protocol_errors import OipError
from app.service.oip.spp_backend import (
    OneModel,
    SppBackend,
    detect_params,
    detection_arrays,
    probability_arrays,
    resolve_class_ids,
)


def test_detect_params_defaults_are_detects() -> None:
    assert detect_params({}) == DetectParams()


def test_detect_params_coerce_protocol_values() -> None:
    params = detect_params({"max_proposals": 20, "nms_iou": "0.5", "scales": "multi"})
    assert (params.max_proposals, params.nms_iou, params.scales) == (20, 0.5, "multi")


def test_resolve_class_ids() -> None:
    classes = ("circle", "square", "triangle")
    assert resolve_class_ids(None, classes) is None
    assert resolve_class_ids("  ", classes) is None
    assert resolve_class_ids("triangle, circle,triangle", classes) == (0, 2)
    with pytest.raises(OipError, match="unknown class name"):
        resolve_class_ids("star", classes)


def test_no_detections_are_empty_arrays_of_the_right_type() -> None:
    arrays = detection_arrays([])
    assert arrays["BOXES"].shape == (0, 4) and arrays["BOXES"].dtype == np.float32
    assert arrays["SCORES"].shape == (0,) and arrays["SCORES"].dtype == np.float32
    assert arrays["CLASS_IDS"].shape == (0,) and arrays["CLASS_IDS"].dtype == np.int64
    assert arrays["LABELS"].shape == (0,) and arrays["LABELS"].dtype == object


def test_probabilities_need_every_class(oip: Any) -> None:
    with pytest.raises(RuntimeError, match="one prediction per class"):
        probability_arrays(oip.predictions[:2], oip.classes)


def test_image_over_the_limit_is_413(oip: Any, png: bytes) -> None:
    backend = SppBackend(
        OneModel(oip.model, oip.FakeEngine()), server_version="1", max_image_bytes=len(png) - 1
    )
    image = np.empty(1, dtype=object)
    image[0] = png
    with pytest.raises(OipError) as caught:
        asyncio.run(backend.infer(oip.model, {"IMAGE": image}, {}))
    assert (caught.value.status_code, caught.value.message) == (
        413,
        f"upload too large: the limit is {len(png) - 1} bytes",
    )


def test_metadata_before_the_model_is_loaded(oip: Any) -> None:
    engine = oip.FakeEngine(is_ready=False)
    backend = SppBackend(OneModel(oip.model, engine), server_version="1", max_image_bytes=1)
    classify = backend.model_metadata(oip.classify_model)
    assert classify is not None and classify.versions == ()
    assert [spec.shape for spec in classify.outputs] == [(-1,), (-1,)]
    assert backend.model_metadata("other") is None
    assert not backend.model_ready(oip.model) and not backend.model_ready("other")
