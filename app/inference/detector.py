"""Detection and classification with a loaded SPP-net: pure functions of (model, image, proposals).

``Detector.detect`` follows SPEC sections 4 and 6 for a whole batch of images at once:

1. per image, each window picks its scale (single mode: all at 688);
2. per image and per scale that at least one window chose: resize, conv5 once;
3. windows -> conv5 cells (``project_windows``) -> pyramid pooling (``roi_spp``);
4. fc6/fc7 over all windows of all images in one pass, SVM scores, Platt confidences,
   box regression from the pooled vectors;
5. per image: decode and clip boxes, per-class NMS, at most ``max_per_class`` per class.

Stage timings (ms) are measured around each step; in a batch they are the batch's times.
No HTTP, no files, no logging here.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import batched_nms

from app.model.preprocess import image_to_tensor, resize_to_scale
from app.model.store import SppModel
from app.ops.boxes import choose_scale_per_window, decode_boxes, resize_plan
from app.ops.spp import project_windows, roi_spp

ScaleMode = Literal["single", "multi"]
ViewMode = Literal["full", "multi", "detect"]
Precision = Literal["float32", "bfloat16", "float16"]
_AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}
#: ``(image, scale) -> (conv5 Tensor[1, C, H5, W5], fx, fy)``;
#: lets training serve conv5 from a cache.
Conv5Fn = Callable[[np.ndarray, int], tuple[Tensor, float, float]]
#: Stage names, in pipeline order, as reported in ``DetectionResult.timings_ms``.
STAGES = ("resize", "conv5", "pooling", "fc", "svm", "regression", "nms")


@dataclass(frozen=True)
class DetectOptions:
    """Per-request detection options; ``None`` means the model manifest's default."""

    scales: ScaleMode = "single"
    nms_iou: float | None = None
    max_per_class: int | None = None
    min_confidence: float = 0.0
    class_ids: tuple[int, ...] | None = None
    max_detections: int | None = None


@dataclass(frozen=True)
class Detection:
    """One detected object, box in the input image's pixel frame."""

    label: str
    class_id: int  # index into the model's classes, 0-based (background is not a class)
    score: float  # raw SVM score
    confidence: float  # Platt-calibrated probability in [0, 1]
    box: tuple[float, float, float, float]  # x1, y1, x2, y2


@dataclass
class DetectionResult:
    """Everything ``detect`` found in one image."""

    detections: list[Detection]
    num_proposals: int
    scales_used: list[int]
    width: int
    height: int
    timings_ms: dict[str, float] = field(default_factory=dict)


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


@dataclass(frozen=True)
class Prediction:
    """One class of a whole-image classification."""

    label: str
    class_id: int
    probability: float


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


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` or ``"auto"`` -> CUDA when present, else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Detector:
    """Runs a loaded :class:`SppModel` on one device.

    ``precision`` other than ``"float32"`` runs the convolutions and fc6/fc7 under
    ``torch.autocast`` in that type (``bfloat16`` on a CPU with native support or on a GPU;
    ``float16`` on CUDA only); pooling, the SVMs, the regressors and NMS stay in float32.
    ``bench/bench_compress.py`` measures its speed and its effect on detections and mAP.
    """

    def __init__(
        self,
        model: SppModel,
        device: str | torch.device | None = None,
        precision: Precision = "float32",
    ) -> None:
        self.device = resolve_device(device)
        if precision not in ("float32", *_AUTOCAST_DTYPES):
            raise ValueError(f"expected precision float32, bfloat16 or float16, got {precision!r}")
        if precision == "float16" and self.device.type != "cuda":
            raise ValueError("float16 inference needs a CUDA device; use bfloat16 on a CPU")
        self.precision = precision
        self.model = model
        self.net = model.net.to(self.device).eval()
        self._stages: dict[str, float] = defaultdict(float)

    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        """Autocast to the reduced precision, or nothing at float32."""
        if self.precision == "float32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_AUTOCAST_DTYPES[self.precision])

    @contextmanager
    def _timed(self, stage: str) -> Iterator[None]:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        yield
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self._stages[stage] += (time.perf_counter() - start) * 1000.0

    def scales_for(self, mode: ScaleMode) -> tuple[int, ...]:
        """The scale set of ``mode`` from the manifest."""
        config = self.model.manifest.detection
        if mode == "single":
            return (config.single_scale,)
        if mode == "multi":
            return tuple(config.multi_scales)
        raise ValueError(f"expected scales 'single' or 'multi', got {mode!r}")

    @torch.inference_mode()
    def conv5_at_scale(self, image: np.ndarray, scale: int) -> tuple[Tensor, float, float]:
        """Resize ``image`` (RGB uint8 ``[H, W, 3]``) to ``scale`` and run the trunk.

        Returns ``(Tensor[1, C, H5, W5], fx, fy)``, the factors mapping original pixels to
        the resized image.
        """
        config = self.model.manifest.detection
        with self._timed("resize"):
            resized, fx, fy = resize_to_scale(image, scale, config.max_long_side)
            x = image_to_tensor(resized, self.model.manifest.preprocess, self.device)
        with self._timed("conv5"), self._autocast():
            conv5 = self.net.trunk(x)
        return conv5, fx, fy

    @torch.inference_mode()
    def pooled_windows(
        self,
        image: np.ndarray,
        boxes: Tensor,
        scales: Sequence[int],
        conv5_fn: Conv5Fn | None = None,
    ) -> tuple[Tensor, list[int]]:
        """Pyramid-pooled conv5 vectors of ``boxes``, each at the scale it chose (SPEC 3, 4).

        Args:
            image (ndarray[H, W, 3] uint8): RGB image.
            boxes (Tensor[N, 4]): windows in the image's pixel frame.
            scales: the scale set; each window picks one (a single scale: all windows).
            conv5_fn: where conv5 comes from; :meth:`conv5_at_scale` by default.

        Returns:
            ``(Tensor[N, D] float32, scales_used)``: conv5 is computed once per used scale only.
        """
        height, width = image.shape[:2]
        levels = self.model.manifest.model.levels
        boxes = boxes.to(self.device, torch.float32)
        choice = choose_scale_per_window(boxes, scales, min(height, width))  # [N]
        pooled = torch.empty(
            (len(boxes), self.model.manifest.model.spp_dim), dtype=torch.float32, device=self.device
        )
        used = sorted(set(choice.tolist()))
        for index in used:
            conv5, fx, fy = (conv5_fn or self.conv5_at_scale)(image, scales[index])
            with self._timed("pooling"):
                picked = (choice == index).nonzero().squeeze(1)
                factors = torch.tensor([fx, fy, fx, fy], device=self.device)
                feature_size = (int(conv5.shape[-2]), int(conv5.shape[-1]))
                cells = project_windows(boxes[picked] * factors, feature_size)
                regions = torch.cat([torch.zeros_like(cells[:, :1]), cells], dim=1)  # [n, 5]
                pooled[picked] = roi_spp(conv5, regions, levels).float()
        return pooled, [scales[i] for i in used]

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
            One :class:`DetectionResult` per image, detections sorted by confidence.
        """
        if len(images) != len(proposals):
            raise ValueError(f"got {len(images)} images but {len(proposals)} proposal arrays")
        per_image = [options] * len(images) if isinstance(options, DetectOptions) else list(options)
        if len(per_image) != len(images):
            raise ValueError(f"got {len(images)} images but {len(per_image)} options")
        self._stages = defaultdict(float)
        boxes = [
            torch.as_tensor(np.asarray(p, dtype=np.float32).reshape(-1, 4), device=self.device)
            for p in proposals
        ]
        chunks, scales_used = [], []
        for image, window_boxes, opts in zip(images, boxes, per_image, strict=True):
            pooled, used = self.pooled_windows(image, window_boxes, self.scales_for(opts.scales))
            chunks.append(pooled)
            scales_used.append(used)
        pooled_all = torch.cat(chunks)  # [sum N, D]
        with self._timed("fc"), self._autocast():
            fc7 = self.net.det_head(pooled_all).float()  # [sum N, F]
        with self._timed("svm"):
            scores = self.net.svm(fc7)  # [sum N, K]
            confidences = self.net.platt(scores)
        with self._timed("regression"):
            deltas = self.net.bbox(pooled_all)  # [sum N, K, 4]
        results = []
        offset = 0
        with self._timed("nms"):
            for image, window_boxes, opts, used in zip(
                images, boxes, per_image, scales_used, strict=True
            ):
                n = len(window_boxes)
                window = slice(offset, offset + n)
                offset += n
                detections = self._postprocess(
                    image.shape[:2],
                    window_boxes,
                    scores[window],
                    confidences[window],
                    deltas[window],
                    opts,
                )
                results.append(
                    DetectionResult(
                        detections=detections,
                        num_proposals=n,
                        scales_used=used,
                        width=image.shape[1],
                        height=image.shape[0],
                    )
                )
        timings = {stage: round(self._stages.get(stage, 0.0), 3) for stage in STAGES}
        for result in results:
            result.timings_ms = dict(timings)
        return results

    def _postprocess(
        self,
        image_size: tuple[int, int],
        proposals: Tensor,
        scores: Tensor,
        confidences: Tensor,
        deltas: Tensor,
        options: DetectOptions,
    ) -> list[Detection]:
        """Per-class decoding, clipping, NMS and capping for one image.

        ``proposals [N, 4]``, ``scores [N, K]``, ``confidences [N, K]``, ``deltas [N, K, 4]``.
        """
        config = self.model.manifest.detection
        classes = self.model.classes
        height, width = image_size
        keep = scores >= config.min_score  # [N, K]
        if options.class_ids is not None:
            allowed = torch.zeros(len(classes), dtype=torch.bool, device=scores.device)
            allowed[list(options.class_ids)] = True
            keep &= allowed
        window_idx, class_idx = keep.nonzero(as_tuple=True)
        if len(window_idx) == 0:
            return []
        boxes = decode_boxes(deltas[window_idx, class_idx], proposals[window_idx])
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width - 1)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height - 1)
        kept_scores = scores[window_idx, class_idx]
        kept_conf = confidences[window_idx, class_idx]
        nms_iou = config.nms_iou if options.nms_iou is None else options.nms_iou
        order = batched_nms(boxes, kept_scores, class_idx, nms_iou)  # sorted by score
        per_class = config.max_per_class if options.max_per_class is None else options.max_per_class
        counts: dict[int, int] = defaultdict(int)
        detections = []
        for i in order.tolist():
            k = int(class_idx[i])
            confidence = float(kept_conf[i])
            if counts[k] >= per_class:
                continue
            counts[k] += 1
            if confidence < options.min_confidence:
                continue
            x1, y1, x2, y2 = (float(v) for v in boxes[i])
            detections.append(
                Detection(
                    label=classes[k],
                    class_id=k,
                    score=float(kept_scores[i]),
                    confidence=confidence,
                    box=(x1, y1, x2, y2),
                )
            )
        detections.sort(key=lambda d: (-d.confidence, -d.score))
        if options.max_detections is not None:
            detections = detections[: options.max_detections]
        return detections

    @torch.inference_mode()
    def classify(
        self,
        images: Sequence[np.ndarray],
        top_k: int = 5,
        size: int | None = None,
        views: ViewMode = "full",
        proposals: Sequence[np.ndarray] | None = None,
    ) -> list[list[Prediction]]:
        """Whole-image classification: full-image SPP (SPEC section 6), multi-view, or by
        detection.

        ``views="full"``: each image is resized so its shorter side is ``size`` (default: the
        manifest's ``classify_size``) and pooled whole, one view. ``views="multi"``: the
        paper's multi-view test on feature maps (section 3.1.2), see
        :meth:`multi_view_probabilities`. ``views="detect"`` (not in the paper): the image's
        ``proposals`` go through :meth:`detect` at the single scale and each class is scored
        by its most confident detection, see :func:`detection_probabilities`. Returns, per
        image, the ``top_k`` classes, most probable first.
        """
        if views not in ("full", "multi", "detect"):
            raise ValueError(f"expected views 'full', 'multi' or 'detect', got {views!r}")
        if views == "detect" and (proposals is None or len(proposals) != len(images)):
            raise ValueError("views='detect' needs one proposal array per image")
        manifest = self.model.manifest
        k = max(1, min(top_k, len(manifest.classes)))
        shorter_side = manifest.preprocess.classify_size if size is None else size
        found = (
            self.detect(images, proposals) if views == "detect" and proposals is not None else []
        )
        results = []
        for i, image in enumerate(images):
            if views == "detect":
                probabilities = detection_probabilities(found[i], len(manifest.classes))
            elif views == "multi":
                probabilities = self.multi_view_probabilities(image)
            else:
                resized, _, _ = resize_to_scale(
                    image, shorter_side, manifest.detection.max_long_side
                )
                x = image_to_tensor(resized, manifest.preprocess, self.device)
                with self._autocast():
                    logits = self.net.classify_logits(x)
                probabilities = self.object_probabilities(logits)[0]
                probabilities = probabilities / probabilities.sum()
            top = torch.topk(probabilities, k)
            results.append(
                [
                    Prediction(label=manifest.classes[c], class_id=int(c), probability=float(p))
                    for p, c in zip(top.values.tolist(), top.indices.tolist(), strict=True)
                ]
            )
        return results

    def object_probabilities(self, logits: Tensor) -> Tensor:
        """Softmax of classification logits ``[N, K]`` or ``[N, K + 1]`` (background last),
        returned for the K object classes only: ``Tensor[N, K]`` float32, rows summing to 1
        minus the background probability."""
        probabilities = torch.softmax(logits.float(), dim=1)
        return probabilities[:, : len(self.model.manifest.classes)]

    @torch.inference_mode()
    def multi_view_probabilities(self, image: np.ndarray) -> Tensor:
        """Class probabilities ``Tensor[K]`` from many views of one image.

        conv5 is computed once per ``view_scales`` entry over the whole image; the nine
        views of :func:`view_windows` at that scale are pooled from it with ``roi_spp`` and
        classified by fc6/fc7/fc8. Departure from the paper, which averages the views'
        softmax outputs (and adds their flips): here each class keeps its *largest*
        probability over the views, renormalised to sum to 1, because an image holding one
        small shape among clutter is won by the one view that frames it, while the average
        is won by the clutter (README, "The default model"). With a background output
        (``ModelConfig.cls_background``) a view that frames only clutter puts its mass there
        and so raises no object class.
        """
        preprocess = self.model.manifest.preprocess
        height, width = image.shape[:2]
        best = None
        for scale in preprocess.view_scales:
            windows = view_windows(
                height,
                width,
                scale,
                preprocess.view_size,
                self.model.manifest.detection.max_long_side,
            )
            pooled, _ = self.pooled_windows(image, torch.from_numpy(windows), (scale,))
            with self._autocast():
                logits = self.net.cls_fc8(self.net.cls_head(pooled))
            top = self.object_probabilities(logits).amax(dim=0)
            best = top if best is None else torch.maximum(best, top)
        assert best is not None, "PreprocessConfig.view_scales is validated non-empty"
        return best / best.sum()

    def warm_up(self) -> None:
        """Run one small detection and classification so the first request is not slow."""
        rng = np.random.default_rng(0)
        image = rng.integers(0, 256, size=(64, 80, 3), dtype=np.uint8)
        boxes = np.array([[0, 0, 40, 40], [10, 5, 70, 60]], dtype=np.float32)
        self.detect([image], [boxes])
        self.classify([image], top_k=1)
