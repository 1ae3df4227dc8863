"""Whole-image classification: full image, multi-view, by detection, and the ranking."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from inference_inputs import CLASSES, random_boxes, random_image

from app.inference.classify import (
    detection_probabilities,
    object_probabilities,
    top_predictions,
    view_windows,
)
from app.inference.detector import Detector
from app.inference.results import Detection, DetectionResult, Prediction
from app.model.preprocess import image_to_tensor, resize_to_scale
from app.ops.spp import project_windows, spatial_pyramid_pool


@pytest.mark.parametrize(("height", "width"), [(120, 160), (300, 200), (50, 400)])
@pytest.mark.parametrize("scale", [100, 224, 560])
def test_view_windows_are_a_grid_of_squares_inside_the_image(
    height: int, width: int, scale: int
) -> None:
    views = view_windows(height, width, scale, view_size=224, max_long_side=10_000)
    side = min(224 * min(height, width) / scale, min(height, width))
    assert 1 <= len(views) <= 9
    np.testing.assert_allclose(views[:, 2] - views[:, 0] + 1, side, rtol=1e-5)
    np.testing.assert_allclose(views[:, 3] - views[:, 1] + 1, side, rtol=1e-5)
    assert views[:, :2].min() >= 0
    assert views[:, 2].max() <= width - 1 + 1e-3 and views[:, 3].max() <= height - 1 + 1e-3
    assert len({tuple(v) for v in views.round(3).tolist()}) == len(views), "no duplicates"
    # The grid reaches both ends of each side: the corners are views.
    assert views[:, 0].min() == 0 and np.isclose(views[:, 2].max(), width - 1)
    assert views[:, 1].min() == 0 and np.isclose(views[:, 3].max(), height - 1)


def test_full_view_drops_the_background_output(background_detector: Detector) -> None:
    """With a background output, ``classify`` reports the K object classes: the softmax over
    all K + 1 logits, background removed, renormalised."""
    image = random_image(13)
    manifest = background_detector.model.manifest
    resized, _, _ = resize_to_scale(
        image, manifest.preprocess.classify_size, manifest.detection.max_long_side
    )
    with torch.inference_mode():
        logits = background_detector.net.classify_logits(
            image_to_tensor(resized, manifest.preprocess, torch.device("cpu"))
        )
    assert logits.shape == (1, len(CLASSES) + 1)
    probabilities = torch.softmax(logits[0], dim=0)[: len(CLASSES)]
    expected = probabilities / probabilities.sum()
    [predictions] = background_detector.classify([image], top_k=10)
    assert len(predictions) == len(CLASSES)
    got = {p.label: p.probability for p in predictions}
    np.testing.assert_allclose([got[c] for c in CLASSES], expected.numpy(), rtol=1e-5)


def test_views_follow_the_long_side_cap() -> None:
    """A 60 x 600 image at scale 224 would be 2240 px long; capped at 1000 its shorter side is
    100 px, so a 64-px view spans 64 * 60 / 100 original px, not 64 * 60 / 224."""
    capped = view_windows(60, 600, 224, view_size=64, max_long_side=1000)
    np.testing.assert_allclose(capped[:, 2] - capped[:, 0] + 1, 64 * 60 / 100, rtol=1e-5)
    uncapped = view_windows(60, 600, 224, view_size=64, max_long_side=5000)
    np.testing.assert_allclose(uncapped[:, 2] - uncapped[:, 0] + 1, 64 * 60 / 224, rtol=1e-5)


@pytest.mark.parametrize("fixture", ["detector", "background_detector"])
def test_multi_view_is_the_best_view_per_class_renormalised(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    """Against a slow reference: each view cut out of conv5 and pooled whole by
    ``spatial_pyramid_pool``, classified one at a time; a background output, when the model
    has one, is dropped from each view's softmax before the best view is taken."""
    detector: Detector = request.getfixturevalue(fixture)
    image = random_image(12)
    net, preprocess = detector.net, detector.model.manifest.preprocess
    best = torch.zeros(len(CLASSES))
    with torch.inference_mode():
        for scale in preprocess.view_scales:
            conv5, fx, fy = detector.conv5_at_scale(image, scale)
            max_long = detector.model.manifest.detection.max_long_side
            windows = torch.from_numpy(
                view_windows(120, 160, scale, preprocess.view_size, max_long)
            )
            cells = project_windows(windows * torch.tensor([fx, fy, fx, fy]), conv5.shape[-2:])
            for left, top, right, bottom in cells.tolist():
                region = conv5[:, :, top : bottom + 1, left : right + 1]
                pooled = spatial_pyramid_pool(region, net.config.levels)
                logits = net.cls_fc8(net.cls_head(pooled))[0]
                probabilities = torch.softmax(logits, dim=0)[: len(CLASSES)]
                best = torch.maximum(best, probabilities)
    expected = best / best.sum()
    [predictions] = detector.classify([image], top_k=len(CLASSES), views="multi")
    got = {p.label: p.probability for p in predictions}
    np.testing.assert_allclose([got[c] for c in CLASSES], expected.numpy(), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="expected views 'full', 'multi' or 'detect'"):
        detector.classify([image], views="many")  # type: ignore[arg-type]


def test_classify_by_detection_is_each_class_best_confidence_renormalised(
    detector: Detector,
) -> None:
    """Against the detections themselves: per class the largest confidence (0 without a
    detection), divided by the sum over classes."""
    image, boxes = random_image(13), random_boxes(13, 60)
    [result] = detector.detect([image], [boxes])
    best = dict.fromkeys(CLASSES, 0.0)
    for d in result.detections:
        best[d.label] = max(best[d.label], d.confidence)
    total = sum(best.values())
    assert total > 0, "min_score -inf: every class detects something"
    [predictions] = detector.classify(
        [image], top_k=len(CLASSES), views="detect", proposals=[boxes]
    )
    got = {p.label: p.probability for p in predictions}
    assert got == pytest.approx({c: best[c] / total for c in CLASSES}, abs=1e-6)
    with pytest.raises(ValueError, match="one proposal array per image"):
        detector.classify([image], views="detect")


def test_detection_probabilities_by_hand() -> None:
    def found(*pairs: tuple[int, float]) -> DetectionResult:
        detections = [
            Detection(CLASSES[c], c, score=0.0, confidence=p, box=(0.0, 0.0, 1.0, 1.0))
            for c, p in pairs
        ]
        return DetectionResult(detections, 10, [96], 20, 20)

    torch.testing.assert_close(
        detection_probabilities(found((1, 0.6), (1, 0.9), (3, 0.3)), 4),
        torch.tensor([0.0, 0.75, 0.0, 0.25]),
    )
    torch.testing.assert_close(detection_probabilities(found(), 4), torch.full((4,), 0.25))


def test_object_probabilities_drop_the_background_column() -> None:
    # softmax([0, 0, log 2]) = [1/4, 1/4, 1/2]; with K = 2 the background (last) is dropped.
    logits = torch.tensor([[0.0, 0.0, math.log(2.0)], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(
        object_probabilities(logits, 2), torch.tensor([[0.25, 0.25], [1 / 3, 1 / 3]])
    )
    # Without a background output the rows are the plain softmax.
    torch.testing.assert_close(
        object_probabilities(torch.tensor([[0.0, math.log(3.0)]]), 2),
        torch.tensor([[0.25, 0.75]]),
    )


def test_top_predictions_rank_and_clamp_k() -> None:
    probabilities = torch.tensor([0.1, 0.6, 0.3])
    names = ["a", "b", "c"]
    assert top_predictions(probabilities, names, 2) == [
        Prediction("b", 1, pytest.approx(0.6)),
        Prediction("c", 2, pytest.approx(0.3)),
    ]
    assert [p.label for p in top_predictions(probabilities, names, 0)] == ["b"]
    assert [p.label for p in top_predictions(probabilities, names, 10)] == ["b", "c", "a"]
