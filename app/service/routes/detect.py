"""``POST /detect``: objects in an uploaded image, as JSON or as the image with boxes drawn.

One request, in order: API key -> query options (422) -> a slot in the admission gate (503)
-> the upload read within the size limit (413) -> form options merged (422) -> class names
resolved (422) -> the ``proposals`` field parsed when sent (422) -> decode (4xx from
``app.imaging``) -> the supplied proposals clipped to the image (422), or else selective search
(the cache, then the process pool) -> the batched detector -> JSON, or PNG/JPEG when
``format`` or ``Accept`` asks for it.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from app.data.client_proposals import (
    ClientProposalsError,
    clip_client_proposals,
    parse_client_proposals,
)
from app.data.proposals import proposal_cap
from app.imaging import MEDIA_TYPES
from app.service.deps import ApiKeyDep, EngineDep
from app.service.engine import InferenceEngine
from app.service.responses import ERROR_RESPONSES, choose_format, server_timing_header
from app.service.api_models import (
    MAX_PROPOSALS_FIELD_BYTES,
    PROPOSALS_FIELD,
    DetectParams,
    DetectResponse,
    ModelRef,
    UnknownClassError,
    class_ids_from_names,
)
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
    engine: InferenceEngine, text: bytes | None, max_proposals: int | None, deadline: float
) -> np.ndarray | None:
    """The ``proposals`` field parsed in the CPU pool (``None`` when absent); a 422 when it is
    not a JSON list of at most ``max_proposals`` (default: the model's cap) boxes of 4 finite
    numbers."""
    if text is None:
        return None
    cap = proposal_cap(engine.detector.model.manifest.proposals, max_proposals)
    try:
        return await engine.run_cpu(deadline, parse_client_proposals, text, cap)
    except ClientProposalsError as exc:
        raise _invalid_proposals(exc) from None


def clip_proposals_field(boxes: np.ndarray | None, image: np.ndarray) -> np.ndarray | None:
    """Parsed proposals clipped to ``image`` (ndarray[H, W, 3]); a 422 for an empty box."""
    if boxes is None:
        return None
    try:
        return clip_client_proposals(boxes, width=image.shape[1], height=image.shape[0])
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
    request: Request, params: Annotated[DetectParams, Query()], engine: EngineDep
) -> Response:
    """Run selective search and the SPP-net detector on the uploaded image."""
    started = time.perf_counter()
    timings: dict[str, float] = {}
    deadline = engine.new_deadline()
    with engine.gate.slot():
        params, upload = await read_image_request(
            request,
            DetectParams,
            params,
            max_bytes=engine.settings.max_upload_bytes,
            timings=timings,
            large_fields={PROPOSALS_FIELD: MAX_PROPOSALS_FIELD_BYTES},
        )
        model = engine.detector.model
        class_ids = resolve_classes(params.classes, model.classes)
        output_format = choose_format(params.format, request.headers.get("accept"))
        supplied = await parse_proposals_field(
            engine, upload.large_fields.get(PROPOSALS_FIELD), params.max_proposals, deadline
        )
        image = await engine.decode(upload.data, deadline=deadline, timings=timings)
        proposals, source = await engine.propose(
            image,
            max_proposals=params.max_proposals,
            deadline=deadline,
            timings=timings,
            supplied=clip_proposals_field(supplied, image),
        )
        options = params.detect_options(class_ids)
        outcome = await engine.detect_windows(
            image, proposals, options, deadline=deadline, timings=timings
        )
        rendered = None
        if output_format != "json":
            rendered = await engine.render(
                image, outcome.value, output_format, deadline=deadline, timings=timings
            )
    engine.finish_timings(request, timings, started)
    headers = {
        "Server-Timing": server_timing_header(timings),
        "X-Model": f"{model.name}/{model.version}",
        "X-Num-Detections": str(len(outcome.value.detections)),
        "X-Proposals-Source": source,
    }
    if rendered is not None:
        return Response(rendered, media_type=MEDIA_TYPES[output_format], headers=headers)
    body = DetectResponse.build(
        ModelRef(name=model.name, version=model.version),
        outcome.value,
        proposals_source=source,
        batch_size=outcome.batch_size,
        timings_ms=timings,
    )
    return JSONResponse(body.model_dump(mode="json"), headers=headers)
