"""Request options and response bodies of the HTTP API (pydantic models, shown in /docs), and
the ``classes`` option resolved to class ids (shared by ``/detect`` and the v2 detection model)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.inference.detector import DetectionResult, DetectOptions, Prediction
from app.service.proposing import ProposalsSource

OutputFormat = Literal["json", "png", "jpeg"]
MAX_PROPOSALS_LIMIT = 10_000
#: The multipart field of ``POST /detect`` carrying the client's own proposals (JSON).
PROPOSALS_FIELD = "proposals"
#: Its most bytes: room for ``MAX_PROPOSALS_LIMIT`` boxes of four numbers written with up to
#: 14 characters each (``[123.456789, ...]``, 64 bytes a box).
MAX_PROPOSALS_FIELD_BYTES = 64 * MAX_PROPOSALS_LIMIT


class DetectParams(BaseModel):
    """Options of ``POST /detect``: query parameters, or form fields next to the image
    (a query parameter wins over a form field of the same name). Unknown names are a 422."""

    model_config = ConfigDict(extra="forbid")

    scales: Literal["single", "multi"] = Field(
        "single", description="single: one scale (688); multi: the manifest's scale set"
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
    format: OutputFormat | None = Field(
        None, description="json, or png/jpeg for the image with boxes drawn (overrides Accept)"
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


class ClassifyParams(BaseModel):
    """Options of ``POST /classify`` (query parameters or form fields)."""

    model_config = ConfigDict(extra="forbid")

    top_k: int = Field(5, ge=1, le=1000, description="number of classes returned, best first")
    views: Literal["full", "multi", "detect"] = Field(
        "full",
        description="full: the whole image pooled as one view (the paper's full-image SPP); "
        "multi: nine views at each of six scales pooled from conv5, each class scored by its "
        "best view (slower, better on small objects); detect: selective search and the "
        "detector, each class scored by its most confident detection (slowest, most accurate "
        "on images holding one object)",
    )


class ModelRef(BaseModel):
    """Which model answered."""

    name: str
    version: str


class Box(BaseModel):
    """A box in the uploaded image's pixel frame (after its EXIF orientation), 0-based."""

    x1: float
    y1: float
    x2: float
    y2: float


class DetectionOut(BaseModel):
    """One detected object."""

    label: str
    class_id: int = Field(description="0-based index into the model's classes")
    confidence: float = Field(description="calibrated probability in [0, 1]")
    score: float = Field(description="raw SVM score")
    box: Box


class DetectResponse(BaseModel):
    """Body of a JSON ``POST /detect`` answer."""

    model: ModelRef
    width: int
    height: int
    detections: list[DetectionOut]
    num_proposals: int = Field(description="windows the detector scored")
    proposals_source: ProposalsSource = Field(
        description="where the windows came from: selective_search, client (the request's "
        "'proposals' field) or cache (selective search of the same pixels, kept in memory)"
    )
    scales: list[int] = Field(description="image scales (shorter side) the network ran at")
    batch_size: int = Field(description="requests that shared this inference batch")
    timings_ms: dict[str, float] = Field(
        description="per stage: read, decode, proposals, queue, the detector's stages, "
        "inference, total"
    )

    @classmethod
    def build(
        cls,
        model: ModelRef,
        result: DetectionResult,
        *,
        proposals_source: ProposalsSource,
        batch_size: int,
        timings_ms: dict[str, float],
    ) -> DetectResponse:
        """Convert a detector result into the response body."""
        detections = [
            DetectionOut(
                label=d.label,
                class_id=d.class_id,
                confidence=d.confidence,
                score=d.score,
                box=Box(x1=d.box[0], y1=d.box[1], x2=d.box[2], y2=d.box[3]),
            )
            for d in result.detections
        ]
        return cls(
            model=model,
            width=result.width,
            height=result.height,
            detections=detections,
            num_proposals=result.num_proposals,
            proposals_source=proposals_source,
            scales=list(result.scales_used),
            batch_size=batch_size,
            timings_ms=timings_ms,
        )


class PredictionOut(BaseModel):
    """One class of a whole-image classification."""

    label: str
    class_id: int
    probability: float


class ClassifyResponse(BaseModel):
    """Body of a ``POST /classify`` answer."""

    model: ModelRef
    width: int
    height: int
    predictions: list[PredictionOut] = Field(description="best first")
    timings_ms: dict[str, float]

    @staticmethod
    def predictions_from(ranked: list[Prediction]) -> list[PredictionOut]:
        """Convert detector predictions."""
        return [
            PredictionOut(label=p.label, class_id=p.class_id, probability=p.probability)
            for p in ranked
        ]


class ErrorResponse(BaseModel):
    """Every error: a short, stable message, or for invalid parameters (422) FastAPI's list of
    ``{type, loc, msg, input}`` objects."""

    detail: str | list[dict[str, Any]]


class HealthResponse(BaseModel):
    """``GET /healthz``."""

    status: Literal["ok"] = "ok"


class ReadyResponse(BaseModel):
    """``GET /readyz``: ``ready`` (200), or ``loading`` / ``failed`` / ``stopping`` (503)."""

    status: Literal["ready", "loading", "failed", "stopping"]
    reason: str | None = None
    model: ModelRef | None = None
    device: str | None = None


class ModelInfo(BaseModel):
    """One loaded model: identity, where it runs, and its manifest summary."""

    name: str
    version: str
    description: str
    classes: list[str]
    device: str
    load_time_s: float | None
    manifest: dict[str, Any]


class ModelsResponse(BaseModel):
    """``GET /v1/models``."""

    models: list[ModelInfo]
