"""End-to-end detect and classify on a tiny random-weight model."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import pytest
import torch
from inference_inputs import CLASSES, random_boxes, random_image
from torchvision.ops import box_iou

from app.inference.detector import STAGES, DetectOptions, Detector
from app.model.config import DetectionConfig
from app.model.store import build_random_model


@pytest.mark.parametrize("scales", ["single", "multi"])
def test_detections_are_well_formed(detector: Detector, scales: str) -> None:
    options = DetectOptions(scales=scales)  # type: ignore[arg-type]
    [result] = detector.detect([random_image(0)], [random_boxes(1, 200)], options)
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
    a = detector.detect([random_image(2)], [random_boxes(3, 100)])[0].detections
    b = detector.detect([random_image(2)], [random_boxes(3, 100)])[0].detections
    assert a == b


def test_batch_equals_one_by_one(detector: Detector) -> None:
    images = [random_image(4), random_image(5, 90, 130)]
    boxes = [random_boxes(6, 50), random_boxes(7, 30, 90, 130)]
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
    [result] = detector.detect([random_image(8)], [np.zeros((0, 4), np.float32)])
    assert result.detections == [] and result.num_proposals == 0


def test_options_filter(detector: Detector) -> None:
    image, boxes = random_image(9), random_boxes(10, 300)
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
    [predictions] = detector.classify([random_image(11)], top_k=10)
    assert [p.label for p in predictions] and len(predictions) == len(CLASSES)
    probabilities = [p.probability for p in predictions]
    assert probabilities == sorted(probabilities, reverse=True)
    assert abs(sum(probabilities) - 1.0) < 1e-5


def test_rejects_mismatched_inputs(detector: Detector) -> None:
    with pytest.raises(ValueError, match="2 images but 1 proposal arrays"):
        detector.detect([random_image(0), random_image(1)], [random_boxes(0, 3)])
    with pytest.raises(ValueError, match="expected scales 'single' or 'multi'"):
        detector.detect([random_image(0)], [random_boxes(0, 3)], DetectOptions(scales="bogus"))  # type: ignore[arg-type]


def test_bfloat16_detections_follow_float32(detector: Detector) -> None:
    """bfloat16 autocast (conv + fc6/fc7) against float32: the strongest detections agree in
    class and box, and scores stay close (bfloat16 keeps 8 bits of mantissa)."""
    reduced = Detector(detector.model, "cpu", precision="bfloat16")
    image, boxes = random_image(21), random_boxes(21, 40)
    [full] = detector.detect([image], [boxes])
    [low] = reduced.detect([image], [boxes])
    assert full.detections and low.detections
    top = full.detections[0]
    match = [d for d in low.detections if d.class_id == top.class_id]
    ious = box_iou(torch.tensor([top.box]), torch.tensor(np.array([d.box for d in match])))
    assert float(ious.max()) > 0.9
    scale = max(abs(d.score) for d in full.detections)
    assert abs(match[int(ious.argmax())].score - top.score) <= 0.05 * scale
    [probabilities] = reduced.classify([image], top_k=len(CLASSES))
    [reference] = detector.classify([image], top_k=len(CLASSES))
    got = {p.label: p.probability for p in probabilities}
    for p in reference:
        assert abs(got[p.label] - p.probability) < 0.02


def test_precision_is_checked(detector: Detector) -> None:
    with pytest.raises(ValueError, match="expected precision"):
        Detector(detector.model, "cpu", precision="int8")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="float16 inference needs a CUDA device"):
        Detector(detector.model, "cpu", precision="float16")


# ------------------------------------------------------------------------ timings, reentrancy

SLOW_SVM_S = 0.5


@pytest.mark.parametrize("inner_call", ["detect", "classify-detect"])
def test_a_call_nested_in_detect_keeps_its_stage_times_to_itself(inner_call: str) -> None:
    """A second call starts while the first is inside its conv5 stage (a forward pre-hook on
    the trunk starts it, as a second caller would), and the second call's SVM stage is made
    slow. The first call's ``svm`` time must be its own: a detector that kept one timer dict
    on the object, reset by each ``detect``, reported the inner call's 500 ms in it."""
    config = DetectionConfig(single_scale=96, multi_scales=(64, 96), min_score=-1e9)
    detector = Detector(build_random_model(CLASSES, detection=config, seed=5), "cpu")
    outer_image, outer_boxes = random_image(30), random_boxes(31, 5)
    inner_image, inner_boxes = random_image(32, 90, 130), random_boxes(33, 7, 90, 130)
    inner: list[Any] = []

    def slow_inner_svm(_: torch.nn.Module, inputs: tuple[torch.Tensor], __: Any) -> None:
        if len(inputs[0]) == len(inner_boxes):
            time.sleep(SLOW_SVM_S)

    def run_inner_once(_: torch.nn.Module, __: Any) -> None:
        if inner:
            return
        inner.append(None)  # the inner call's own trunk pass comes back here
        if inner_call == "detect":
            inner[0] = detector.detect([inner_image], [inner_boxes])[0]
        else:
            inner[0] = detector.classify(
                [inner_image], top_k=2, views="detect", proposals=[inner_boxes]
            )

    handles = [
        detector.net.svm.register_forward_hook(slow_inner_svm),
        detector.net.trunk.register_forward_pre_hook(run_inner_once),
    ]
    try:
        [outer] = detector.detect([outer_image], [outer_boxes])
    finally:
        for handle in handles:
            handle.remove()
    assert inner[0] is not None
    assert outer.timings_ms["conv5"] >= SLOW_SVM_S * 1000, "the inner call ran inside conv5"
    assert outer.timings_ms["svm"] < SLOW_SVM_S * 1000 / 2
    if inner_call == "detect":
        assert inner[0].timings_ms["svm"] >= SLOW_SVM_S * 1000


def test_each_result_owns_its_timings(detector: Detector) -> None:
    """Results of one batch carry equal but separate dicts; a later call leaves them alone."""
    first, second = detector.detect(
        [random_image(40), random_image(41)], [random_boxes(42, 9), random_boxes(43, 9)]
    )
    assert first.timings_ms == second.timings_ms and first.timings_ms is not second.timings_ms
    before = dict(first.timings_ms)
    detector.detect([random_image(44)], [random_boxes(45, 30)], DetectOptions(scales="multi"))
    assert first.timings_ms == before
    assert all(first.timings_ms[stage] >= 0.0 for stage in STAGES)


def _uncalibrated_detector_without_classifier() -> Detector:
    """A random model as an import makes one: no classification head, calibration "none",
    Platt parameters that would change the confidences if they were used."""
    from app.model.config import ModelConfig
    from app.model.net import SppNet
    from app.model.store import SppModel

    base = build_random_model(CLASSES, detection=DetectionConfig(single_scale=96))
    config = ModelConfig(
        num_classes=len(CLASSES), channels=(8, 8, 8, 8, 8), fc_dim=32, classifier=False
    )
    net = SppNet(config).eval().requires_grad_(False)
    net.svm.weight.normal_(generator=torch.Generator().manual_seed(0))
    net.platt.a.fill_(3.0)
    net.platt.b.fill_(-1.0)
    detection = DetectionConfig(single_scale=96, min_score=None, calibration="none")
    manifest = base.manifest.model_copy(update={"model": config, "detection": detection})
    return Detector(SppModel(manifest=manifest, net=net), "cpu")


def test_uncalibrated_confidence_is_the_sigmoid_of_the_score() -> None:
    detector = _uncalibrated_detector_without_classifier()
    options = DetectOptions(nms_iou=1.0, max_per_class=10**6, min_confidence=0.0)
    [result] = detector.detect([random_image(4)], [random_boxes(5, 30)], options)
    assert len(result.detections) == 30 * len(CLASSES)  # no score threshold, nothing suppressed
    for d in result.detections:
        assert d.confidence == pytest.approx(1.0 / (1.0 + math.exp(-d.score)), abs=1e-6)
    positive = detector.detect(
        [random_image(4)], [random_boxes(5, 30)], DetectOptions(min_confidence=0.5)
    )
    assert all(d.score >= 0 for d in positive[0].detections)


def test_a_model_without_classifier_detects_and_classifies_by_detection_only() -> None:
    detector = _uncalibrated_detector_without_classifier()
    detector.warm_up()
    image = random_image(6)
    [predictions] = detector.classify(
        [image], top_k=2, views="detect", proposals=[random_boxes(7, 20)]
    )
    assert len(predictions) == 2
    for views in ("full", "multi"):
        with pytest.raises(ValueError, match="no whole-image classification head"):
            detector.classify([image], views=views)  # type: ignore[arg-type]
