"""``POST /classify``: whole-image class probabilities, best first.

The same upload rules as ``/detect`` (multipart field ``image`` or a raw ``image/*`` body);
``top_k`` as a query parameter or form field. The image goes through the network once, at
full-image SPP (docs/model.md §6), batched with whatever else waits for the inference worker.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from app.service import requests
from app.service.api_models import ClassifyParams, ClassifyResponse, ModelRef
from app.service.deps import ApiKeyDep, RegistryDep
from app.service.responses import ERROR_RESPONSES, server_timing_header
from app.service.uploads import read_image_request, upload_openapi

router = APIRouter(tags=["inference"], dependencies=[ApiKeyDep])


def _classify_openapi() -> dict[str, Any]:
    return upload_openapi(
        {
            "top_k": {"type": "string", "description": "classes returned"},
            "views": {"type": "string", "description": "full, multi or detect"},
        }
    )


def require_head_for_views(has_classifier: bool, views: str) -> None:
    """A 422 for ``views`` full or multi on a model without a whole-image classification
    head (an imported detector): such a model classifies only by detection."""
    if has_classifier or views == "detect":
        return
    raise RequestValidationError(
        [
            {
                "type": "value_error",
                "loc": ("query", "views"),
                "msg": f"views={views!r} needs a whole-image classification head, which this "
                "model does not have; use views=detect",
                "input": views,
            }
        ]
    )


@router.post(
    "/classify",
    response_model=ClassifyResponse,
    responses=ERROR_RESPONSES,
    openapi_extra=_classify_openapi(),
    summary="Classify a whole image",
)
async def classify(
    request: Request, params: Annotated[ClassifyParams, Query()], registry: RegistryDep
) -> JSONResponse:
    """Class probabilities of the uploaded image, ``top_k`` best first."""
    with requests.admit(registry) as job:
        request.state.timings_ms = job.timings
        params, upload = await read_image_request(
            request,
            ClassifyParams,
            params,
            max_bytes=registry.settings.max_upload_bytes,
            timings=job.timings,
        )
        with registry.lease(params.model or registry.settings.model_name) as serving:
            request.state.model_name = serving.name
            model = serving.detector.model
            require_head_for_views(model.manifest.model.classifier, params.views)
            image, predictions = await requests.classify(
                job, serving, upload.data, params.top_k, params.views
            )
    body = ClassifyResponse(
        model=ModelRef(name=model.name, version=model.version),
        width=int(image.shape[1]),
        height=int(image.shape[0]),
        predictions=ClassifyResponse.predictions_from(predictions),
        timings_ms=job.timings,
    )
    return JSONResponse(
        body.model_dump(mode="json"), headers={"Server-Timing": server_timing_header(job.timings)}
    )
