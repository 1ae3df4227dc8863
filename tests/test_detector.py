"""End-to-end detect and classify on a tiny random-weight model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from app.detector import STAGES, DetectOptions, Detector
from app.model.config import DetectionConfig
from app.model.store import build_random_model

CLASSES = ["circle", "square", "triangle", "star"]


@pytest.fixture(scope="module")
def detector() -> Detector:
    # Small scales keep the test fast; the pipeline is the same as at the paper's scales.
    config = DetectionConfig(single_scale=96, multi_scales=(64, 96, 128, 160, 224), min_score=-1e9)
    return Detector(build_random_model(CLASSES, detection=config), "cpu")


def _image(seed: int, height: int = 120, width: int = 160) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _boxes(seed: int, n: int, height: int = 120, width: int = 160) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x1 = rng.uniform(0, width - 20, n)
    y1 = rng.uniform(0, height - 20, n)
    w = rng.uniform(4, width, n)
    h = rng.uniform(4, height, n)
    return np.stack(
        [x1, y1, np.minimum(x1 + w, width - 1), np.minimum(y1 + h, height - 1)], 1
    ).astype(np.float32)


@pytest.mark.parametrize("scales", ["single", "multi"])
def test_detections_are_well_formed(detector: Detector, scales: str) -> None:
    [result] = detector.detect([_image(0)], [_boxes(1, 200)], DetectOptions(scales=scales))  # type: ignore[arg-type]
    assert result.num_proposals == 200 and (result.width, result.height) == (160, 120)
    assert result.detections, "a random model with min_score -inf must detect something"
    boxes = torch.tensor([d.box for d in result.detections])
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 159).all()
    assert (boxes[:, 1] >= 0).all() and (boxes[:, 3] <= 119).all()
    assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
    confidences = [d.confidence for d in result.detections]
    assert confidences == sorted(confidences, reverse=True)
    assert all(0.0 <= c <= 1.0 for c in confidences)
    for k in range(len(CLASSES)):
        mine = torch.tensor([d.class_id == k for d in result.detections])
        if mine.sum() > 1:
            iou = box_iou(boxes[mine], boxes[mine]).fill_diagonal_(0)
            assert iou.max() <= 0.3 + 1e-6
    assert set(result.timings_ms) == set(STAGES)
    if scales == "single":
        assert result.scales_used == [96]
    else:
        assert set(result.scales_used) <= {64, 96, 128, 160, 224}


def test_deterministic(detector: Detector) -> None:
    a = detector.detect([_image(2)], [_boxes(3, 100)])[0].detections
    b = detector.detect([_image(2)], [_boxes(3, 100)])[0].detections
    assert a == b


def test_batch_equals_one_by_one(detector: Detector) -> None:
    images = [_image(4), _image(5, 90, 130)]
    boxes = [_boxes(6, 50), _boxes(7, 30, 90, 130)]
    batched = detector.detect(images, boxes, [DetectOptions(), DetectOptions(scales="multi")])
    single = [
        detector.detect([images[0]], [boxes[0]])[0],
        detector.detect([images[1]], [boxes[1]], DetectOptions(scales="multi"))[0],
    ]
    for got, want in zip(batched, single, strict=True):
        assert [d.label for d in got.detections] == [d.label for d in want.detections]
        np.testing.assert_allclose(
            [d.box for d in got.detections], [d.box for d in want.detections], rtol=0, atol=1e-3
        )


def test_no_proposals_gives_no_detections(detector: Detector) -> None:
    [result] = detector.detect([_image(8)], [np.zeros((0, 4), np.float32)])
    assert result.detections == [] and result.num_proposals == 0


def test_options_filter(detector: Detector) -> None:
    image, boxes = _image(9), _boxes(10, 300)
    [everything] = detector.detect([image], [boxes])
    [only] = detector.detect([image], [boxes], DetectOptions(class_ids=(1,)))
    assert {d.class_id for d in only.detections} <= {1}
    # NMS is per class, so the filter keeps exactly that class's detections (compared by
    # score: windows that share conv5 cells tie, and either may represent the tie).
    assert [d.score for d in only.detections] == [
        d.score for d in everything.detections if d.class_id == 1
    ]
    [capped] = detector.detect([image], [boxes], DetectOptions(max_detections=3, max_per_class=2))
    assert len(capped.detections) <= 3
    [confident] = detector.detect([image], [boxes], DetectOptions(min_confidence=0.6))
    assert all(d.confidence >= 0.6 for d in confident.detections)


def test_classify_returns_sorted_probabilities(detector: Detector) -> None:
    [predictions] = detector.classify([_image(11)], top_k=10)
    assert [p.label for p in predictions] and len(predictions) == len(CLASSES)
    probabilities = [p.probability for p in predictions]
    assert probabilities == sorted(probabilities, reverse=True)
    assert abs(sum(probabilities) - 1.0) < 1e-5


def test_rejects_mismatched_inputs(detector: Detector) -> None:
    with pytest.raises(ValueError, match="2 images but 1 proposal arrays"):
        detector.detect([_image(0), _image(1)], [_boxes(0, 3)])
    with pytest.raises(ValueError, match="expected scales 'single' or 'multi'"):
        detector.detect([_image(0)], [_boxes(0, 3)], DetectOptions(scales="bogus"))  # type: ignore[arg-type]
