"""Network outputs of one image's windows -> its detections (docs/model.md §6, last step).

A pure function of tensors and numbers: no model, no device choice, no timing. Per class,
windows scoring at least ``min_score`` (all, without one) are the candidates. In the default
order their boxes are regressed and clipped to the image, then per-class NMS
(``torchvision.ops.batched_nms``, on boxes as they are or, with ``nms_extent="inclusive"``,
with the "+1" pixel-set areas) keeps the highest-scoring of overlapping boxes and each class
keeps its ``max_per_class`` best. With ``nms_before_regression`` (the SPP_net release's order)
each class first keeps its ``max_per_class`` best-scoring windows, NMS runs on those windows
unregressed, and only the survivors are regressed and clipped. Then detections below
``min_confidence`` are dropped and the rest are sorted by confidence and cut to
``max_detections``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from app.inference.results import Detection, DetectOptions
from app.model.config import DetectionConfig, PixelExtent
from app.ops.boxes import clip_boxes, decode_boxes, inclusive_to_exclusive


@dataclass(frozen=True)
class PostprocessOptions:
    """Every threshold and cap of :func:`postprocess`, resolved (no manifest defaults left)."""

    min_score: float | None
    """Windows whose SVM score for a class is below this are not candidates for it; ``None``:
    every window is."""
    nms_iou: float
    """Per-class NMS IoU threshold."""
    max_per_class: int
    """Detections kept per class after NMS (counted before ``min_confidence``)."""
    nms_extent: PixelExtent = "exclusive"
    """Box widths in NMS: ``x2 - x1`` (``exclusive``) or ``x2 - x1 + 1`` (``inclusive``)."""
    min_confidence: float = 0.0
    """Detections whose calibrated confidence is below this are dropped."""
    class_ids: tuple[int, ...] | None = None
    """Only these classes (0-based ids); ``None``: all."""
    max_detections: int | None = None
    """Keep the best N of all classes by confidence; ``None``: all."""
    nms_before_regression: bool = False
    """The per-class cap on the windows' scores, NMS on the unregressed windows, then regress
    the survivors (the release's order)."""

    @classmethod
    def resolve(cls, options: DetectOptions, config: DetectionConfig) -> PostprocessOptions:
        """A request's options with the manifest's ``config`` filling what they leave ``None``."""
        return cls(
            min_score=config.min_score,
            nms_iou=config.nms_iou if options.nms_iou is None else options.nms_iou,
            max_per_class=(
                config.max_per_class if options.max_per_class is None else options.max_per_class
            ),
            nms_extent=config.nms_extent,
            min_confidence=options.min_confidence,
            class_ids=options.class_ids,
            max_detections=options.max_detections,
            nms_before_regression=config.nms_before_regression,
        )


def first_per_class(order: Tensor, class_idx: Tensor, cap: int) -> Tensor:
    """The entries of ``order`` (indices, best first) that are among the first ``cap`` of
    their class (``class_idx[i]``), in ``order``'s order."""
    counts: dict[int, int] = defaultdict(int)
    kept = []
    for i in order.tolist():
        k = int(class_idx[i])
        if counts[k] < cap:
            counts[k] += 1
            kept.append(i)
    return torch.as_tensor(kept, dtype=torch.long, device=order.device)


def _nms(boxes: Tensor, scores: Tensor, class_idx: Tensor, options: PostprocessOptions) -> Tensor:
    """Per-class NMS then the per-class cap: indices into ``boxes``, best score first."""
    nms_boxes = boxes if options.nms_extent == "exclusive" else inclusive_to_exclusive(boxes)
    order = batched_nms(nms_boxes, scores, class_idx, options.nms_iou)  # by score, desc.
    return first_per_class(order, class_idx, options.max_per_class)


def postprocess(
    windows: Tensor,
    scores: Tensor,
    confidences: Tensor,
    deltas: Tensor,
    image_size: tuple[int, int],
    classes: Sequence[str],
    options: PostprocessOptions,
) -> list[Detection]:
    """Detections of one image from its windows' scores and box deltas.

    Args:
        windows (Tensor[N, 4]): the proposals, ``(x1, y1, x2, y2)`` pixels.
        scores (Tensor[N, K]): SVM scores per window and class.
        confidences (Tensor[N, K]): the scores' confidences in [0, 1] (see
            ``DetectionConfig.calibration``).
        deltas (Tensor[N, K, 4]): per-class box-regression deltas.
        image_size: ``(height, width)`` of the image, pixels.
        classes: the K class names.
        options: thresholds and caps.

    Returns:
        Detections sorted by confidence (then score), highest first; ``[]`` for N = 0.
    """
    if options.min_score is None:
        keep = torch.ones_like(scores, dtype=torch.bool)  # [N, K]
    else:
        keep = scores >= options.min_score  # [N, K]
    if options.class_ids is not None:
        allowed = torch.zeros(len(classes), dtype=torch.bool, device=scores.device)
        allowed[list(options.class_ids)] = True
        keep &= allowed
    window_idx, class_idx = keep.nonzero(as_tuple=True)
    if len(window_idx) == 0:
        return []
    kept_scores = scores[window_idx, class_idx]
    kept_conf = confidences[window_idx, class_idx]
    if options.nms_before_regression:
        by_score = torch.sort(kept_scores, descending=True, stable=True).indices
        best = first_per_class(by_score, class_idx, options.max_per_class)
        order = best[_nms(windows[window_idx[best]], kept_scores[best], class_idx[best], options)]
        survivors = window_idx[order]
        boxes = decode_boxes(deltas[survivors, class_idx[order]], windows[survivors])
    else:
        regressed = decode_boxes(deltas[window_idx, class_idx], windows[window_idx])
        order = _nms(clip_boxes(regressed, image_size), kept_scores, class_idx, options)
        boxes = regressed[order]
    boxes = clip_boxes(boxes, image_size)  # x in [0, W - 1], y in [0, H - 1]
    detections = []
    for box, i in zip(boxes.tolist(), order.tolist(), strict=True):
        confidence = float(kept_conf[i])
        if confidence < options.min_confidence:
            continue
        k = int(class_idx[i])
        x1, y1, x2, y2 = (float(v) for v in box)
        detections.append(
            Detection(classes[k], k, float(kept_scores[i]), confidence, (x1, y1, x2, y2))
        )
    detections.sort(key=lambda d: (-d.confidence, -d.score))
    if options.max_detections is not None:
        detections = detections[: options.max_detections]
    return detections
