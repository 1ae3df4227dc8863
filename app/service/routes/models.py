"""``GET /v1/models``: the manifest summary of the loaded model(s) (one per process)."""

from __future__ import annotations

from fastapi import APIRouter

from app.service.deps import ApiKeyDep, StateDep
from app.service.api_models import ModelInfo, ModelsResponse

router = APIRouter(tags=["models"], dependencies=[ApiKeyDep])


@router.get("/v1/models", response_model=ModelsResponse, summary="Loaded models")
async def list_models(state: StateDep) -> ModelsResponse:
    """The loaded model with its manifest (without training provenance); empty until ready."""
    if state.status != "ready" or state.engine is None:
        return ModelsResponse(models=[])
    detector = state.engine.detector
    model = detector.model
    manifest = model.manifest
    info = ModelInfo(
        name=model.name,
        version=model.version,
        description=manifest.description,
        classes=model.classes,
        device=str(detector.device),
        load_time_s=None if state.load_time_s is None else round(state.load_time_s, 3),
        manifest=manifest.summary(),
    )
    return ModelsResponse(models=[info])
