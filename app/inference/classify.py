"""Whole-image class probabilities, three ways: full image, multi-view, by detection.

- :func:`full_image_probabilities`: the image resized so its shorter side is ``classify_size``
  and pooled whole, one view (the paper's full-image SPP, docs/model.md §6);
- :func:`multi_view_probabilities`: the paper's multi-view test on feature maps (section
  3.1.2), nine views per scale pooled from conv5, each class scored by its best view;
- :func:`detection_probabilities` (not in the paper): each class scored by its most confident
  detection.

Each returns ``Tensor[K]`` summing to 1; :func:`top_predictions` ranks it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from app.inference.features import Runtime, pooled_windows
from app.inference.results import DetectionResult, Prediction
from app.model.preprocess import image_to_tensor, resize_to_scale
from app.ops.boxes import resize_plan


def view_windows(
    height: int, width: int, scale: int, view_size: int, max_long_side: int
) -> np.ndarray:
    """The views of multi-view classification at one scale, in original pixels.

    The image is seen resized as conv5 sees it at ``scale`` (:func:`resize_plan`: shorter side
    ``scale``, unless the longer side would pass ``max_long_side``); the views are squares of
    ``view_size`` resized pixels (the whole shorter side if that is less) on a 3 x 3 grid
    from one corner to the other: the paper's four corners, four edge middles and centre.
    Views that coincide (an image no larger than a view along a side) are kept once.

    Returns:
        ndarray[N, 4] float32 ``(x1, y1, x2, y2)``, 1 <= N <= 9.
    """
    short = min(height, width)
    plan = resize_plan(height, width, scale, max_long_side)
    side = min(view_size * short / min(plan.height, plan.width), float(short))
    xs = np.unique(np.linspace(0.0, width - side, 3).round(3))
    ys = np.unique(np.linspace(0.0, height - side, 3).round(3))
    return np.array(
        [[x, y, x + side - 1.0, y + side - 1.0] for y in ys for x in xs], dtype=np.float32
    )


def object_probabilities(logits: Tensor, num_classes: int) -> Tensor:
    """Softmax of classification logits ``[N, K]`` or ``[N, K + 1]`` (background last),
    returned for the K object classes only: ``Tensor[N, K]`` float32, rows summing to 1
    minus the background probability."""
    probabilities = torch.softmax(logits.float(), dim=1)
    return probabilities[:, :num_classes]


def require_classifier(runtime: Runtime) -> None:
    """Raise ``ValueError`` when the model has no whole-image classification head.

    An imported detector (``ModelConfig.classifier`` false) classifies only by detection.
    """
    if not runtime.model.manifest.model.classifier:
        raise ValueError(
            f"model {runtime.model.name!r} has no whole-image classification head; "
            "use views='detect'"
        )


@torch.inference_mode()
def full_image_probabilities(runtime: Runtime, image: np.ndarray, size: int) -> Tensor:
    """Class probabilities ``Tensor[K]`` of ``image`` (RGB uint8 ``[H, W, 3]``) resized so its
    shorter side is ``size`` pixels and pooled whole; a background output is dropped and the
    rest renormalised to sum to 1. ``ValueError`` without a classification head."""
    require_classifier(runtime)
    manifest = runtime.model.manifest
    resized, _, _ = resize_to_scale(image, size, manifest.detection.max_long_side)
    x = image_to_tensor(resized, manifest.preprocess, runtime.device)
    with runtime.autocast():
        logits = runtime.model.net.classify_logits(x)
    probabilities = object_probabilities(logits, len(manifest.classes))[0]
    return probabilities / probabilities.sum()


@torch.inference_mode()
def multi_view_probabilities(runtime: Runtime, image: np.ndarray) -> Tensor:
    """Class probabilities ``Tensor[K]`` from many views of one image.

    conv5 is computed once per ``view_scales`` entry over the whole image; the nine
    views of :func:`view_windows` at that scale are pooled from it with ``roi_spp`` and
    classified by fc6/fc7/fc8. Departure from the paper, which averages the views'
    softmax outputs (and adds their flips): here each class keeps its *largest*
    probability over the views, renormalised to sum to 1, because an image holding one
    small shape among clutter is won by the one view that frames it, while the average
    is won by the clutter (docs/departures.md). With a background output
    (``ModelConfig.cls_background``) a view that frames only clutter puts its mass there and
    so raises no object class. ``ValueError`` without a classification head.
    """
    require_classifier(runtime)
    manifest = runtime.model.manifest
    net = runtime.model.net
    height, width = image.shape[:2]
    best = None
    for scale in manifest.preprocess.view_scales:
        windows = view_windows(
            height, width, scale, manifest.preprocess.view_size, manifest.detection.max_long_side
        )
        pooled, _ = pooled_windows(runtime, image, torch.from_numpy(windows), (scale,))
        with runtime.autocast():
            logits = net.cls_fc8(net.cls_head(pooled))
        top = object_probabilities(logits, len(manifest.classes)).amax(dim=0)  # [K]
        best = top if best is None else torch.maximum(best, top)
    assert best is not None, "PreprocessConfig.view_scales is validated non-empty"
    return best / best.sum()


def detection_probabilities(result: DetectionResult, num_classes: int) -> Tensor:
    """Whole-image class probabilities ``Tensor[K]`` from one image's detections.

    Each class scores the calibrated ``confidence`` of its most confident detection (0 when
    it has none), renormalised to sum to 1; uniform when nothing was detected. An image that
    holds one object is then classified by the window that frames it, scored by the SVMs
    trained with hard negatives, instead of by one view of the whole image.
    """
    best = torch.zeros(num_classes)
    for detection in result.detections:
        best[detection.class_id] = max(float(best[detection.class_id]), detection.confidence)
    total = float(best.sum())
    return best / total if total > 0 else torch.full((num_classes,), 1.0 / num_classes)


def top_predictions(probabilities: Tensor, classes: Sequence[str], top_k: int) -> list[Prediction]:
    """The ``top_k`` classes of ``probabilities [K]`` (clamped to 1..K), most probable first."""
    k = max(1, min(top_k, len(classes)))
    top = torch.topk(probabilities, k)
    return [
        Prediction(label=classes[c], class_id=int(c), probability=float(p))
        for p, c in zip(top.values.tolist(), top.indices.tolist(), strict=True)
    ]
