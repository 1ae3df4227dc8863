"""Operations: ``/healthz`` (alive), ``/readyz`` (``MODEL_NAME`` loaded and warm), ``/metrics``.

All three are open even when ``API_KEY`` is set: probes and Prometheus scrapers carry no
credentials, and none of them reveals more than counts, latencies and the model's name.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from app.service.api_models import ErrorResponse, HealthResponse, ModelRef, ReadyResponse
from app.service.deps import MetricsDep, RegistryDep

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=HealthResponse, summary="Liveness")
async def healthz() -> HealthResponse:
    """200 while the process serves HTTP, whatever the model's state."""
    return HealthResponse()


@router.get(
    "/readyz",
    response_model=ReadyResponse,
    responses={503: {"model": ReadyResponse, "description": "loading, failed or stopping"}},
    summary="Readiness",
)
async def readyz(registry: RegistryDep) -> JSONResponse:
    """200 once ``MODEL_NAME`` is loaded and warmed up; 503 with the reason before (or after)."""
    status, reason = registry.status(registry.settings.model_name)
    serving = registry.engine
    if status == "ready" and serving is not None:
        model = serving.detector.model
        body = ReadyResponse(
            status="ready",
            model=ModelRef(name=model.name, version=model.version),
            device=str(serving.detector.device),
        )
        return JSONResponse(body.model_dump(mode="json"))
    body = ReadyResponse(status=status, reason=reason)
    return JSONResponse(body.model_dump(mode="json"), status_code=503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}, 500: {"model": ErrorResponse}},
    summary="Prometheus metrics",
)
async def metrics(registry: MetricsDep) -> Response:
    """Counters, gauges and histograms in the Prometheus text format."""
    return Response(registry.render(), media_type=registry.content_type)
