"""Detectors on small random-weight models, shared by the inference tests."""

from __future__ import annotations

import pytest
from inference_inputs import CLASSES

from app.inference.detector import Detector
from app.model.config import DetectionConfig
from app.model.store import build_random_model


@pytest.fixture(scope="session")
def detector() -> Detector:
    """Four classes, every window a candidate (``min_score`` -1e9). Small scales keep the tests
    fast; the pipeline is the same as at the paper's scales."""
    config = DetectionConfig(single_scale=96, multi_scales=(64, 96, 128, 160, 224), min_score=-1e9)
    return Detector(build_random_model(CLASSES, detection=config), "cpu")


@pytest.fixture(scope="session")
def background_detector() -> Detector:
    """Like ``detector``, with a background output in the classification fc8 (K + 1)."""
    return Detector(build_random_model(CLASSES, seed=1, cls_background=True), "cpu")
