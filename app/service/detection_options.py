"""Detection options as every protocol takes them (``/detect``'s query or form fields, the
Open Inference Protocol's request parameters), and the ``classes`` option resolved to class ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.inference.results import DetectOptions

MAX_PROPOSALS_LIMIT = 10_000


class DetectionParams(BaseModel):
    """Detection options (unknown names are refused)."""

    model_config = ConfigDict(extra="forbid")

    scales: Literal["single", "multi"] | None = Field(
        None,
        description="single: one scale (688); multi: the manifest's scale set (default: the "
        "model's default_scales, single unless its manifest says otherwise)",
    )
    max_proposals: int | None = Field(
        None,
        ge=1,
        le=MAX_PROPOSALS_LIMIT,
        description="cap on selective-search windows, and the most boxes a 'proposals' field "
        "may hold (default: the model's, 2000)",
    )
    min_confidence: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="drop detections whose calibrated confidence is below this (0: keep all)",
    )
    nms_iou: float | None = Field(
        None, gt=0.0, le=1.0, allow_inf_nan=False, description="per-class NMS IoU threshold"
    )
    max_detections: int | None = Field(None, ge=1, le=10_000, description="keep the best N")
    classes: str | None = Field(
        None, max_length=4096, description="comma-separated labels to keep (default: all)"
    )

    def detect_options(self, class_ids: tuple[int, ...] | None) -> DetectOptions:
        """The detector's options for these parameters; ``class_ids``: :attr:`classes`
        resolved (:func:`class_ids_from_names`), ``None`` for all classes."""
        return DetectOptions(
            scales=self.scales,
            nms_iou=self.nms_iou,
            min_confidence=self.min_confidence,
            class_ids=class_ids,
            max_detections=self.max_detections,
        )


class UnknownClassError(ValueError):
    """A ``classes`` option naming labels the model does not have."""


def class_ids_from_names(names: str | None, classes: Sequence[str]) -> tuple[int, ...] | None:
    """A ``classes`` option (comma-separated labels) -> sorted indices into ``classes``;
    ``None`` (all classes) when it is absent or blank.

    Raises:
        UnknownClassError: with the message both APIs return, naming the unknown labels and
            the model's classes.
    """
    if names is None or not names.strip():
        return None
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in classes]
    if unknown:
        raise UnknownClassError(
            f"unknown class name(s): {', '.join(unknown)}; expected some of: {', '.join(classes)}"
        )
    return tuple(sorted({classes.index(name) for name in wanted}))
