"""Request options and response bodies of the service's own HTTP routes (pydantic models,
shown in /docs). The detection options themselves live in :mod:`app.service.detection_options`,
shared with the Open Inference Protocol."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.inference.detector import DetectionResult, Prediction
from app.service.detection_options import MAX_PROPOSALS_LIMIT, DetectionParams
from app.service.proposing import ProposalsSource

OutputFormat = Literal["json", "png", "jpeg"]
#: The multipart field of ``POST /detect`` carrying the client's own proposals (JSON).
PROPOSALS_FIELD = "proposals"
#: Its most bytes: room for ``MAX_PROPOSALS_LIMIT`` boxes of four numbers written with up to
#: 14 characters each (``[123.456789, ...]``, 64 bytes a box).
MAX_PROPOSALS_FIELD_BYTES = 64 * MAX_PROPOSALS_LIMIT


class DetectParams(DetectionParams):
    """Options of ``POST /detect``: query parameters, or form fields next to the image
    (a query parameter wins over a form field of the same name). Unknown names are a 422."""

    model: str | None = Field(
        None, max_length=128, description="the loaded model that answers (default: MODEL_NAME)"
    )
    format: OutputFormat | None = Field(
        None, description="json, or png/jpeg for the image with boxes drawn (overrides Accept)"
    )


class ClassifyParams(BaseModel):
    """Options of ``POST /classify`` (query parameters or form fields)."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(
        None, max_length=128, description="the loaded model that answers (default: MODEL_NAME)"
    )
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
    """``GET /readyz``: ``ready`` (200), or ``loading`` / ``failed`` / ``stopping`` /
    ``unloaded`` (503)."""

    status: Literal["ready", "loading", "failed", "stopping", "unloaded"]
    reason: str | None = None
    model: ModelRef | None = None
    device: str | None = None


class ModelMemoryOut(BaseModel):
    """Memory of a loaded model, bytes."""

    parameters_bytes: int = Field(description="its weights and buffers")
    cuda_allocated_bytes: int | None = Field(
        description="growth of the CUDA allocator while it loaded and warmed up (null off CUDA)"
    )


class ModelInfo(BaseModel):
    """One loaded model: identity, state, where it runs, memory, and its manifest summary."""

    name: str
    version: str
    state: Literal["READY"] = "READY"
    description: str
    classes: list[str]
    device: str
    load_time_s: float | None
    memory: ModelMemoryOut
    manifest: dict[str, Any]


class ModelsResponse(BaseModel):
    """``GET /v1/models``."""

    models: list[ModelInfo]
