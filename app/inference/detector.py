"""Detection and classification with a loaded SPP-net, for a batch of images.

``Detector.detect`` follows docs/model.md §§4 and 6 for a whole batch of images at once:

1. per image, each window picks its scale (single mode: all at 688);
2. per image and per scale that at least one window chose: resize, conv5 once
   (:mod:`app.inference.features`);
3. windows -> conv5 cells (``project_windows``) -> pyramid pooling (``roi_spp``);
4. fc6/fc7 over all windows of all images in one pass, SVM scores, Platt confidences,
   box regression from the pooled vectors (:func:`score_windows`);
5. per image: decode and clip boxes, per-class NMS, caps (:mod:`app.inference.postprocess`).

Stage timings (ms) are measured around each step into a dict local to the call and returned
in every ``DetectionResult.timings_ms``; in a batch they are the batch's times. The detector
keeps no per-call state, so one instance serves concurrent and nested calls.
No HTTP, no files, no logging here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from app.inference.classify import (
    detection_probabilities,
    full_image_probabilities,
    multi_view_probabilities,
    top_predictions,
    view_windows,
)
from app.inference.features import (
    Conv5Fn,
    Precision,
    Runtime,
    conv5_at_scale,
    pooled_windows,
    resolve_device,
)
from app.inference.postprocess import PostprocessOptions, postprocess
from app.inference.results import (
    STAGES,
    Detection,
    DetectionResult,
    DetectOptions,
    Prediction,
    ScaleMode,
    ViewMode,
)
from app.inference.timing import timed
from app.model.net import SppNet
from app.model.store import SppModel

__all__ = [
    "STAGES",
    "Conv5Fn",
    "DetectOptions",
    "Detection",
    "DetectionResult",
    "Detector",
    "Precision",
    "Prediction",
    "ScaleMode",
    "ViewMode",
    "detection_probabilities",
    "resolve_device",
    "score_windows",
    "view_windows",
]


@torch.inference_mode()
def score_windows(
    runtime: Runtime, pooled: Tensor, timings: dict[str, float] | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """fc6/fc7, SVM scores, confidences and box deltas of pooled windows.

    Confidences follow the manifest's ``detection.calibration``: the fitted Platt sigmoid, or
    with ``none`` the plain ``sigmoid(score)``.

    Args:
        pooled (Tensor[N, D]): pyramid-pooled conv5 vectors.
        timings: stages ``fc``, ``svm`` and ``regression`` (ms) are added to it when given.

    Returns:
        ``(scores Tensor[N, K], confidences Tensor[N, K], deltas Tensor[N, K, 4])``, float32.
    """
    net = runtime.model.net
    with timed(timings, "fc", runtime.device), runtime.autocast():
        fc7 = net.det_head(pooled).float()  # [N, F]
    with timed(timings, "svm", runtime.device):
        scores = net.svm(fc7)  # [N, K]
        if runtime.model.manifest.detection.calibration == "none":
            confidences = torch.sigmoid(scores)  # uncalibrated: 0.5 at score 0
        else:
            confidences = net.platt(scores)
    with timed(timings, "regression", runtime.device):
        deltas = net.bbox(pooled)  # [N, K, 4]
    return scores, confidences, deltas


def _options_per_image(
    images: Sequence[np.ndarray],
    proposals: Sequence[np.ndarray],
    options: DetectOptions | Sequence[DetectOptions],
) -> list[DetectOptions]:
    if len(images) != len(proposals):
        raise ValueError(f"got {len(images)} images but {len(proposals)} proposal arrays")
    per_image = [options] * len(images) if isinstance(options, DetectOptions) else list(options)
    if len(per_image) != len(images):
        raise ValueError(f"got {len(images)} images but {len(per_image)} options")
    return per_image


class Detector:
    """Runs a loaded :class:`SppModel` on one device (see :class:`Runtime` for ``precision``).

    ``bench/bench_compress.py`` measures reduced precision's speed and its effect on
    detections and mAP.
    """

    def __init__(
        self,
        model: SppModel,
        device: str | torch.device | None = None,
        precision: Precision = "float32",
    ) -> None:
        self.runtime = Runtime.on_device(model, device, precision)

    @property
    def model(self) -> SppModel:
        return self.runtime.model

    @property
    def net(self) -> SppNet:
        return self.runtime.model.net

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    @property
    def precision(self) -> Precision:
        return self.runtime.precision

    def scales_for(self, mode: ScaleMode | None) -> tuple[int, ...]:
        """The scale set of ``mode`` from the manifest (``None``: its ``default_scales``)."""
        config = self.model.manifest.detection
        mode = config.default_scales if mode is None else mode
        if mode == "single":
            return (config.single_scale,)
        if mode == "multi":
            return tuple(config.multi_scales)
        raise ValueError(f"expected scales 'single' or 'multi', got {mode!r}")

    def conv5_at_scale(self, image: np.ndarray, scale: int) -> tuple[Tensor, float, float]:
        """See :func:`app.inference.features.conv5_at_scale`."""
        return conv5_at_scale(self.runtime, image, scale)

    def pooled_windows(
        self,
        image: np.ndarray,
        boxes: Tensor,
        scales: Sequence[int],
        conv5_fn: Conv5Fn | None = None,
        timings: dict[str, float] | None = None,
    ) -> tuple[Tensor, list[int]]:
        """See :func:`app.inference.features.pooled_windows`."""
        return pooled_windows(
            self.runtime, image, boxes, scales, conv5_fn=conv5_fn, timings=timings
        )

    @torch.inference_mode()
    def detect(
        self,
        images: Sequence[np.ndarray],
        proposals: Sequence[np.ndarray],
        options: DetectOptions | Sequence[DetectOptions] = DetectOptions(),
    ) -> list[DetectionResult]:
        """Detect objects in a batch of images.

        Args:
            images: RGB uint8 arrays ``[H, W, 3]``.
            proposals: per image, ``ndarray[N, 4]`` float windows ``(x1, y1, x2, y2)``.
            options: one :class:`DetectOptions` for all images, or one per image.

        Returns:
            One :class:`DetectionResult` per image, detections sorted by confidence, each with
            its own copy of the call's stage timings.
        """
        per_image = _options_per_image(images, proposals, options)
        timings: dict[str, float] = {}
        boxes = [
            torch.as_tensor(np.asarray(p, dtype=np.float32).reshape(-1, 4), device=self.device)
            for p in proposals
        ]
        chunks, scales_used = [], []
        for image, window_boxes, opts in zip(images, boxes, per_image, strict=True):
            scales = self.scales_for(opts.scales)
            pooled, used = pooled_windows(
                self.runtime, image, window_boxes, scales, timings=timings
            )
            chunks.append(pooled)
            scales_used.append(used)
        scores, confidences, deltas = score_windows(self.runtime, torch.cat(chunks), timings)
        config = self.model.manifest.detection
        classes = self.model.classes
        results = []
        offset = 0
        with timed(timings, "nms", self.device):
            for image, window_boxes, opts, used in zip(
                images, boxes, per_image, scales_used, strict=True
            ):
                part = slice(offset, offset + len(window_boxes))
                offset += len(window_boxes)
                detections = postprocess(
                    window_boxes,
                    scores[part],
                    confidences[part],
                    deltas[part],
                    image.shape[:2],
                    classes,
                    PostprocessOptions.resolve(opts, config),
                )
                height, width = image.shape[:2]
                results.append(DetectionResult(detections, len(window_boxes), used, width, height))
        report = {stage: timings.get(stage, 0.0) for stage in STAGES}
        for result in results:
            result.timings_ms = dict(report)
        return results

    @torch.inference_mode()
    def classify(
        self,
        images: Sequence[np.ndarray],
        top_k: int = 5,
        size: int | None = None,
        views: ViewMode = "full",
        proposals: Sequence[np.ndarray] | None = None,
    ) -> list[list[Prediction]]:
        """Whole-image classification, per image the ``top_k`` classes, most probable first.

        ``views="full"``: :func:`~app.inference.classify.full_image_probabilities` with the
        shorter side ``size`` (default: the manifest's ``classify_size``). ``views="multi"``:
        :func:`~app.inference.classify.multi_view_probabilities`. ``views="detect"``: the
        images' ``proposals`` go through :meth:`detect` at the single scale, then
        :func:`~app.inference.classify.detection_probabilities`.
        """
        if views not in ("full", "multi", "detect"):
            raise ValueError(f"expected views 'full', 'multi' or 'detect', got {views!r}")
        manifest = self.model.manifest
        if views == "detect":
            if proposals is None or len(proposals) != len(images):
                raise ValueError("views='detect' needs one proposal array per image")
            found = self.detect(images, proposals)
            probabilities = [detection_probabilities(r, len(manifest.classes)) for r in found]
        elif views == "multi":
            probabilities = [multi_view_probabilities(self.runtime, image) for image in images]
        else:
            shorter_side = manifest.preprocess.classify_size if size is None else size
            probabilities = [
                full_image_probabilities(self.runtime, image, shorter_side) for image in images
            ]
        return [top_predictions(p, manifest.classes, top_k) for p in probabilities]

    def warm_up(self) -> None:
        """Run one small detection and classification so the first request is not slow."""
        rng = np.random.default_rng(0)
        image = rng.integers(0, 256, size=(64, 80, 3), dtype=np.uint8)
        boxes = np.array([[0, 0, 40, 40], [10, 5, 70, 60]], dtype=np.float32)
        self.detect([image], [boxes])
        if self.model.manifest.model.classifier:
            self.classify([image], top_k=1)
