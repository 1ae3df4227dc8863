"""End-to-end detect and classify on a tiny random-weight model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from app.inference.detector import (
    STAGES,
    Detection,
    DetectionResult,
    DetectOptions,
    Detector,
    detection_probabilities,
    view_windows,
)
from app.model.config import DetectionConfig
from app.model.preprocess import image_to_tensor, resize_to_scale
from app.model.store import build_random_model
from app.ops.spp import project_windows, spatial_pyramid_pool

CLASSES = ["circle", "square", "triangle", "star"]


@pytest.fixture(scope="module")
def detector() -> Detector:
    # Small scales keep the test fast; the pipeline is the same as at the paper's scales.
    config = DetectionConfig(single_scale=96, multi_scales=(64, 96, 128, 160, 224), min_score=-1e9)
    return Detector(build_random_model(CLASSES, detection=config), "cpu")


@pytest.fixture(scope="module")
def background_detector() -> Detector:
    """Like ``detector``, with a background output in the classification fc8 (K + 1)."""
    return Detector(build_random_model(CLASSES, seed=1, cls_background=True), "cpu")


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
    image = _image(13)
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
    image = _image(12)
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
    image, boxes = _image(13), _boxes(13, 60)
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


def test_bfloat16_detections_follow_float32(detector: Detector) -> None:
    """bfloat16 autocast (conv + fc6/fc7) against float32: the strongest detections agree in
    class and box, and scores stay close (bfloat16 keeps 8 bits of mantissa)."""
    reduced = Detector(detector.model, "cpu", precision="bfloat16")
    image, boxes = _image(21), _boxes(21, 40)
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
