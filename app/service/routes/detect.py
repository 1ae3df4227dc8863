"""``POST /detect``: objects in an uploaded image, as JSON or as the image with boxes drawn.

One request, in order: API key -> query options (422) -> a slot in the admission gate (503)
-> the upload read within the size limit (413) -> form options merged (422) -> the model
(``model``, default ``MODEL_NAME``: 404 when not loaded, 503 when not ready) -> class names
resolved (422) -> the ``proposals`` field parsed when sent (422) -> the request sequence of
:mod:`app.service.requests`: decode (4xx from ``app.imaging``), the supplied proposals clipped
to the image (422) or else selective search (the cache, then the process pool), the model's
batched detector -> JSON, or PNG/JPEG when ``format`` or ``Accept`` asks for it.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from app.data.client_proposals import (
    ClientProposalsError,
    parse_client_proposals,
)
from app.data.proposals import proposal_cap
from app.imaging import MEDIA_TYPES
from app.service import requests
from app.service.api_models import (
    MAX_PROPOSALS_FIELD_BYTES,
    PROPOSALS_FIELD,
    DetectParams,
    DetectResponse,
    ModelRef,
)
from app.service.deps import ApiKeyDep, RegistryDep
from app.service.detection_options import UnknownClassError, class_ids_from_names
from app.service.model_serving import ModelServing
from app.service.responses import ERROR_RESPONSES, choose_format, server_timing_header
from app.service.uploads import read_image_request, upload_openapi

router = APIRouter(tags=["inference"], dependencies=[ApiKeyDep])


def resolve_classes(names: str | None, classes: list[str]) -> tuple[int, ...] | None:
    """Comma-separated labels -> class ids; an unknown label is a 422."""
    try:
        return class_ids_from_names(names, classes)
    except UnknownClassError as exc:
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("query", "classes"), "msg": str(exc), "input": names}]
        ) from None


def _invalid_proposals(exc: ClientProposalsError) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": ("body", PROPOSALS_FIELD), "msg": str(exc)}]
    )


async def parse_proposals_field(
    job: requests.ModelRequest,
    serving: ModelServing,
    text: bytes | None,
    max_proposals: int | None,
) -> np.ndarray | None:
    """The ``proposals`` field parsed in the CPU pool (``None`` when absent); a 422 when it is
    not a JSON list of at most ``max_proposals`` (default: the model's cap) boxes of 4 finite
    numbers."""
    if text is None:
        return None
    cap = proposal_cap(serving.detector.model.manifest.proposals, max_proposals)
    try:
        return await job.stages.run_cpu(job.deadline, parse_client_proposals, text, cap)
    except ClientProposalsError as exc:
        raise _invalid_proposals(exc) from None


def _detect_openapi() -> dict[str, Any]:
    schema = DetectParams.model_json_schema()["properties"]
    fields = {name: {"type": "string", **_describe(schema[name])} for name in schema}
    fields[PROPOSALS_FIELD] = {
        "type": "string",
        "description": "your own windows instead of selective search: a JSON array of "
        "[x1, y1, x2, y2] boxes in the image's pixel frame (after EXIF orientation), 0-based, "
        f"at most max_proposals of them (at most {MAX_PROPOSALS_FIELD_BYTES} bytes)",
    }
    return upload_openapi(fields)


def _describe(field_schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": field_schema["description"]} if "description" in field_schema else {}


@router.post(
    "/detect",
    response_model=DetectResponse,
    responses={
        **ERROR_RESPONSES,
        200: {
            "description": "detections as JSON, or the image with boxes drawn",
            "content": {media: {} for media in MEDIA_TYPES.values()},
        },
    },
    openapi_extra=_detect_openapi(),
    summary="Detect objects in an image",
)
async def detect(
    request: Request, params: Annotated[DetectParams, Query()], registry: RegistryDep
) -> Response:
    """Run selective search and the SPP-net detector on the uploaded image."""
    with requests.admit(registry) as job:
        request.state.timings_ms = job.timings
        params, upload = await read_image_request(
            request,
            DetectParams,
            params,
            max_bytes=registry.settings.max_upload_bytes,
            timings=job.timings,
            large_fields={PROPOSALS_FIELD: MAX_PROPOSALS_FIELD_BYTES},
        )
        with registry.lease(params.model or registry.settings.model_name) as serving:
            request.state.model_name = serving.name
            found = await _detect(request, job, serving, params, upload.data, upload.large_fields)
    model = serving.detector.model
    headers = {
        "Server-Timing": server_timing_header(job.timings),
        "X-Model": f"{model.name}/{model.version}",
        "X-Num-Detections": str(len(found.outcome.value.detections)),
        "X-Proposals-Source": found.source,
    }
    if found.rendered is not None:
        media_type = MEDIA_TYPES[choose_format(params.format, request.headers.get("accept"))]
        return Response(found.rendered, media_type=media_type, headers=headers)
    body = DetectResponse.build(
        ModelRef(name=model.name, version=model.version),
        found.outcome.value,
        proposals_source=found.source,
        batch_size=found.outcome.batch_size,
        timings_ms=job.timings,
    )
    return JSONResponse(body.model_dump(mode="json"), headers=headers)


async def _detect(
    request: Request,
    job: requests.ModelRequest,
    serving: ModelServing,
    params: DetectParams,
    data: bytes,
    large_fields: dict[str, bytes],
) -> requests.Detected:
    """Options resolved against ``serving``'s model, then the request sequence."""
    class_ids = resolve_classes(params.classes, serving.detector.model.classes)
    output_format = choose_format(params.format, request.headers.get("accept"))
    supplied = await parse_proposals_field(
        job, serving, large_fields.get(PROPOSALS_FIELD), params.max_proposals
    )
    try:
        return await requests.detect(
            job,
            serving,
            data,
            params.detect_options(class_ids),
            max_proposals=params.max_proposals,
            supplied=supplied,
            render_format=None if output_format == "json" else output_format,
        )
    except ClientProposalsError as exc:
        raise _invalid_proposals(exc) from None
