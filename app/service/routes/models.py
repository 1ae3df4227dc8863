"""``GET /v1/models``: the loaded models; ``GET /v1/models/{name}``: one of them with its
manifest (without training provenance)."""

from __future__ import annotations

from fastapi import APIRouter

from app.service.api_models import ModelInfo, ModelMemoryOut, ModelsResponse
from app.service.deps import ApiKeyDep, RegistryDep
from app.service.model_serving import ModelServing
from app.service.responses import ERROR_RESPONSES

router = APIRouter(tags=["models"], dependencies=[ApiKeyDep])


def model_info(serving: ModelServing) -> ModelInfo:
    """What the API tells of one loaded model version."""
    model = serving.detector.model
    manifest = model.manifest
    load_time = serving.load_time_s
    return ModelInfo(
        name=model.name,
        version=model.version,
        description=manifest.description,
        classes=model.classes,
        device=str(serving.detector.device),
        load_time_s=None if load_time is None else round(load_time, 3),
        memory=ModelMemoryOut(
            parameters_bytes=serving.memory.parameters,
            cuda_allocated_bytes=serving.memory.cuda_allocated,
        ),
        manifest=manifest.summary(),
    )


@router.get("/v1/models", response_model=ModelsResponse, summary="Loaded models")
async def list_models(registry: RegistryDep) -> ModelsResponse:
    """Every loaded and ready model, ``MODEL_NAME`` first; empty until one is ready."""
    loaded = registry.loaded()
    names = sorted(loaded, key=lambda n: (n != registry.settings.model_name, n))
    return ModelsResponse(models=[model_info(loaded[name]) for name in names])


@router.get(
    "/v1/models/{name}", response_model=ModelInfo, responses=ERROR_RESPONSES, summary="One model"
)
async def get_model(name: str, registry: RegistryDep) -> ModelInfo:
    """One loaded model (404 naming the loaded ones; 503 while it loads)."""
    return model_info(registry.serving(name))
