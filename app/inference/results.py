"""What inference takes and returns: per-request options and plain-data results.

No tensors here: a :class:`DetectionResult` or a :class:`Prediction` crosses threads, goes
into JSON and is compared in tests as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from app.model.config import ScaleMode

ViewMode = Literal["full", "multi", "detect"]
#: Stage names, in pipeline order, as reported in ``DetectionResult.timings_ms``.
STAGES = ("resize", "conv5", "pooling", "fc", "svm", "regression", "nms")


@dataclass(frozen=True)
class DetectOptions:
    """Per-request detection options; ``None`` means the model manifest's default."""

    scales: ScaleMode | None = None
    """``None``: the manifest's ``detection.default_scales``."""
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
    confidence: float  # in [0, 1]: Platt-calibrated, or sigmoid(score) (manifest calibration)
    box: tuple[float, float, float, float]  # x1, y1, x2, y2


@dataclass
class DetectionResult:
    """Everything ``detect`` found in one image, and where the call's time went.

    ``timings_ms``: milliseconds per stage of :data:`STAGES`, measured around the whole
    batch the image was detected in (a batch shares its conv5 passes' timer, its fc pass...).
    Each result owns its dict.
    """

    detections: list[Detection]
    num_proposals: int
    scales_used: list[int]
    width: int
    height: int
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Prediction:
    """One class of a whole-image classification."""

    label: str
    class_id: int
    probability: float
