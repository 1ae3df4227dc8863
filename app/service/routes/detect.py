"""``POST /detect``: objects in an uploaded image, as JSON or as the image with boxes drawn.

One request, in order: API key -> query options (422) -> a slot in the admission gate (503)
-> the upload read within the size limit (413) -> form options merged (422) -> class names
resolved (422) -> decode (4xx from ``app.imaging``) -> selective search in the CPU pool ->
the batched detector -> JSON, or PNG/JPEG when ``format`` or ``Accept`` asks for it.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from app.inference.detector import DetectOptions
from app.service.deps import ApiKeyDep, PipelineDep
from app.service.pipeline import server_timing_header
from app.service.render import MEDIA_TYPES, choose_format
from app.service.schemas import DetectParams, DetectResponse, ErrorResponse, ModelRef
from app.service.uploads import read_image_request, upload_openapi

router = APIRouter(tags=["inference"], dependencies=[ApiKeyDep])

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "empty, malformed or truncated upload",
        401: "API key missing or wrong (only when API_KEY is set)",
        413: "upload or pixel count over the limit",
        415: "not a supported image or content type",
        422: "invalid options (a list of errors), or an image too small or too elongated",
        503: "model not ready, server busy (Retry-After), or out of memory",
        504: "the request's deadline passed",
    }.items()
}


def resolve_classes(names: str | None, classes: list[str]) -> tuple[int, ...] | None:
    """Comma-separated labels -> class ids; an unknown label is a 422."""
    if names is None or not names.strip():
        return None
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in classes]
    if unknown:
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("query", "classes"),
                    "msg": f"unknown class name(s): {', '.join(unknown)}; "
                    f"expected some of: {', '.join(classes)}",
                    "input": names,
                }
            ]
        )
    return tuple(sorted({classes.index(name) for name in wanted}))


def _detect_openapi() -> dict[str, Any]:
    schema = DetectParams.model_json_schema()["properties"]
    return upload_openapi({name: {"type": "string", **_describe(schema[name])} for name in schema})


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
    request: Request, params: Annotated[DetectParams, Query()], pipeline: PipelineDep
) -> Response:
    """Run selective search and the SPP-net detector on the uploaded image."""
    started = time.perf_counter()
    timings: dict[str, float] = {}
    deadline = pipeline.new_deadline()
    with pipeline.gate.slot():
        params, upload = await read_image_request(
            request,
            DetectParams,
            params,
            max_bytes=pipeline.settings.max_upload_bytes,
            timings=timings,
        )
        model = pipeline.detector.model
        class_ids = resolve_classes(params.classes, model.classes)
        output_format = choose_format(params.format, request.headers.get("accept"))
        image = await pipeline.decode(upload.data, deadline=deadline, timings=timings)
        options = DetectOptions(
            scales=params.scales,
            nms_iou=params.nms_iou,
            min_confidence=params.min_confidence,
            class_ids=class_ids,
            max_detections=params.max_detections,
        )
        outcome = await pipeline.detect(
            image, options, max_proposals=params.max_proposals, deadline=deadline, timings=timings
        )
        rendered = None
        if output_format != "json":
            rendered = await pipeline.render(
                image, outcome.value, output_format, deadline=deadline, timings=timings
            )
    pipeline.finish_timings(request, timings, started)
    headers = {
        "Server-Timing": server_timing_header(timings),
        "X-Model": f"{model.name}/{model.version}",
        "X-Num-Detections": str(len(outcome.value.detections)),
    }
    if rendered is not None:
        return Response(rendered, media_type=MEDIA_TYPES[output_format], headers=headers)
    body = DetectResponse.build(
        ModelRef(name=model.name, version=model.version),
        outcome.value,
        batch_size=outcome.batch_size,
        timings_ms=timings,
    )
    return JSONResponse(body.model_dump(mode="json"), headers=headers)
