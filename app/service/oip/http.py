"""The Open Inference Protocol's HTTP routes, as an ``APIRouter`` over an
:class:`~app.service.oip.backend.InferenceBackend`.

=========================================================  =====================================
route                                                      answer
=========================================================  =====================================
``GET /v2``                                                server metadata
``GET /v2/health/live``, ``GET /v2/health/ready``          200, or 503 when not live / ready
``GET /v2/models/{name}[/versions/{version}]``             model metadata (404 unknown)
``GET /v2/models/{name}[/versions/{version}]/ready``       200, or 503 while not ready
``GET /v2/models/{name}[/versions/{version}]/config``      Triton's model configuration (for
                                                           Triton's tools: ``perf_analyzer``)
``POST /v2/models/{name}[/versions/{version}]/infer``      the answer, JSON or binary
``POST /v2/repository/index``                              every model with its state (the
                                                           repository extension, when given)
``POST /v2/repository/models/{name}/load``                 load or reload; 200 ``{}``, or the
                                                           error saying why it failed
``POST /v2/repository/models/{name}/unload``               unload; 200 ``{}``
=========================================================  =====================================

An inference takes the backend's admission slot before its body is read.

Every error of these routes, including those of their dependencies (an API key's 401) and of
the backend (through the error translator), is ``{"error": "<message>"}`` with its status.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, params
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from app.service.oip.backend import (
    InferenceBackend,
    ModelRepository,
    check_load_parameters,
    index_json,
    resolve_model,
    run_inference,
)
from app.service.oip.codec import INFERENCE_HEADER, encode_infer_response, parse_infer_request
from app.service.oip.openapi_models import (
    ErrorOut,
    InferRequestIn,
    InferResponseOut,
    LiveOut,
    ModelConfigOut,
    ModelMetadataOut,
    ModelReadyOut,
    ReadyOut,
    ServerMetadataOut,
)
from app.service.oip.protocol_errors import ErrorTranslator, OipError, no_translation

_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def error_response(error: OipError) -> JSONResponse:
    """``{"error": message}`` with the error's status and headers."""
    return JSONResponse({"error": error.message}, error.status_code, headers=error.headers)


def _route_class(translate: ErrorTranslator) -> type[APIRoute]:
    """An ``APIRoute`` whose errors, from the endpoint or its dependencies, become
    :func:`error_response`; exceptions ``translate`` does not know are re-raised."""

    class OipRoute(APIRoute):
        def get_route_handler(self) -> Handler:
            handler = super().get_route_handler()

            async def answer(request: Request) -> Response:
                try:
                    return await handler(request)
                except OipError as exc:
                    return error_response(exc)
                except HTTPException as exc:
                    return error_response(OipError(exc.status_code, str(exc.detail), exc.headers))
                except RequestValidationError as exc:
                    first = exc.errors()[0] if exc.errors() else {}
                    where = ".".join(str(part) for part in first.get("loc", ()))
                    return error_response(OipError(400, f"{where}: {first.get('msg', 'invalid')}"))
                except Exception as exc:
                    translated = translate(exc)
                    if translated is None:
                        raise
                    return error_response(translated)

            return answer

    return OipRoute


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, at most ``limit`` bytes (413 beyond), inflated when its
    ``Content-Encoding`` is gzip or deflate (413 when the inflated body is beyond ``limit``)."""
    too_large = OipError(413, f"request body too large: the limit is {limit} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise too_large
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding not in _WBITS:
        raise OipError(415, f"unsupported Content-Encoding {encoding!r}: expected gzip or deflate")
    inflater = zlib.decompressobj(_WBITS[encoding])
    try:
        inflated = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise OipError(400, f"corrupt {encoding} request body") from None
    if len(inflated) > limit:
        raise too_large
    return inflated


ERROR_DESCRIPTIONS = {
    400: "not a valid request for this model (datatype, shape, input, parameter), or a failed "
    "model load (the reason)",
    401: "API key missing or wrong (only when API_KEY is set)",
    403: "model load and unload are off (MODEL_CONTROL=none)",
    404: "no such model or version",
    413: "request body or image over the limit",
    415: "not a supported image, or an unsupported Content-Encoding",
    422: "an image too small or too elongated",
    503: "not ready, busy (Retry-After), or out of memory",
    504: "the request's deadline passed",
}


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        status: {"model": ErrorOut, "description": ERROR_DESCRIPTIONS[status]}
        for status in statuses
    }


def _inline_refs(schema: Any, definitions: dict[str, Any]) -> Any:
    """A JSON schema with its local ``$defs`` references replaced by their definitions."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            return _inline_refs(definitions[schema["$ref"].rsplit("/", 1)[-1]], definitions)
        return {k: _inline_refs(v, definitions) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inline_refs(item, definitions) for item in schema]
    return schema


def _infer_openapi() -> dict[str, Any]:
    schema = InferRequestIn.model_json_schema()
    binary = {"type": "string", "format": "binary"}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": _inline_refs(schema, schema.get("$defs", {}))},
                "application/octet-stream": {"schema": binary},
            },
        }
    }


Endpoint = Callable[[Request, str, str], Coroutine[Any, Any, Response]]


def _add_model_route(
    router: APIRouter, suffix: str, endpoint: Endpoint, method: str, **options: Any
) -> None:
    """``endpoint(request, name, version)`` at ``/v2/models/{name}<suffix>`` (version ``""``)
    and ``/v2/models/{name}/versions/{version}<suffix>``."""

    async def latest(request: Request, name: str) -> Response:
        return await endpoint(request, name, "")

    async def versioned(request: Request, name: str, version: str) -> Response:
        return await endpoint(request, name, version)

    router.add_api_route(f"/v2/models/{{name}}{suffix}", latest, methods=[method], **options)
    router.add_api_route(
        f"/v2/models/{{name}}/versions/{{version}}{suffix}", versioned, methods=[method], **options
    )


def _add_server_routes(router: APIRouter, backend: InferenceBackend) -> None:
    """``GET /v2`` (server metadata) and the two health routes (open: probes carry no key)."""

    @router.get("/v2", responses={200: {"model": ServerMetadataOut}}, summary="Server metadata")
    async def server_metadata() -> JSONResponse:
        return JSONResponse(backend.server_metadata().to_json())

    @router.get(
        "/v2/health/live", responses={200: {"model": LiveOut}, **_errors(503)}, summary="Liveness"
    )
    async def server_live() -> JSONResponse:
        if not backend.live():
            raise OipError(503, "server not live")
        return JSONResponse({"live": True})

    @router.get(
        "/v2/health/ready",
        responses={200: {"model": ReadyOut}, **_errors(503)},
        summary="Readiness",
    )
    async def server_ready() -> JSONResponse:
        if not backend.ready():
            raise OipError(503, "server not ready", headers={"Retry-After": "5"})
        return JSONResponse({"ready": True})


async def _json_object(request: Request, limit: int = 64 * 1024) -> dict[str, Any]:
    """A repository call's optional JSON object body (``{}`` when empty; 400 otherwise)."""
    body = await read_body(request, limit)
    if not body.strip():
        return {}
    try:
        parsed = json.loads(body)
    except ValueError:
        raise OipError(400, "the request body is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise OipError(400, "the request body must be a JSON object")
    return parsed


def _add_repository_routes(
    router: APIRouter, repository: ModelRepository, guarded: list[params.Depends]
) -> None:
    """The model repository extension (all routes need the API key when one is set)."""
    errors = _errors(400, 401, 403, 404)

    @router.post(
        "/v2/repository/index", dependencies=guarded, responses=errors, summary="Model index"
    )
    async def repository_index(request: Request) -> JSONResponse:
        ready_only = bool((await _json_object(request)).get("ready", False))
        return JSONResponse(index_json(repository.index(), ready_only))

    @router.post(
        "/v2/repository/models/{name}/load",
        dependencies=guarded,
        responses=errors,
        summary="Load or reload a model (MODEL_CONTROL=explicit)",
    )
    async def repository_load(request: Request, name: str) -> JSONResponse:
        parameters = (await _json_object(request)).get("parameters") or {}
        check_load_parameters(list(parameters) if isinstance(parameters, dict) else [])
        await repository.load(name)
        return JSONResponse({})

    @router.post(
        "/v2/repository/models/{name}/unload",
        dependencies=guarded,
        responses=errors,
        summary="Unload a model (MODEL_CONTROL=explicit)",
    )
    async def repository_unload(request: Request, name: str) -> JSONResponse:
        await _json_object(request)
        await repository.unload(name)
        return JSONResponse({})


def create_oip_router(
    backend: InferenceBackend,
    *,
    max_body_bytes: int,
    translate_error: ErrorTranslator = no_translation,
    dependencies: Sequence[params.Depends] = (),
    repository: ModelRepository | None = None,
) -> APIRouter:
    """The v2 routes over ``backend``.

    Args:
        max_body_bytes: largest accepted inference request body (after inflating), in bytes.
        translate_error: the backend's exceptions -> protocol errors (see
            :data:`~app.service.oip.protocol_errors.ErrorTranslator`).
        dependencies: run before the model metadata, inference and repository routes (an
            API key check); health, server metadata and model readiness stay open, as probes
            carry no credentials.
        repository: the model repository extension's routes are added when given.
    """
    router = APIRouter(tags=["open inference protocol"], route_class=_route_class(translate_error))
    guarded = list(dependencies)

    _add_server_routes(router, backend)
    if repository is not None:
        _add_repository_routes(router, repository, guarded)

    async def model_metadata(_: Request, name: str, version: str) -> Response:
        return JSONResponse(resolve_model(backend, name, version).to_json())

    async def model_config(_: Request, name: str, version: str) -> Response:
        return JSONResponse(resolve_model(backend, name, version).to_triton_config())

    async def model_ready(_: Request, name: str, version: str) -> Response:
        resolve_model(backend, name, version)
        if not backend.model_ready(name):
            raise OipError(503, f"model '{name}' is not ready", headers={"Retry-After": "5"})
        return JSONResponse({"name": name, "ready": True})

    async def model_infer(request: Request, name: str, version: str) -> Response:
        resolve_model(backend, name, version)
        request.state.model_name = name
        with backend.admission() as ticket:
            timings = getattr(ticket, "timings", None)
            if isinstance(timings, dict):
                request.state.timings_ms = timings  # for the access log line
            body = await read_body(request, max_body_bytes)
            infer_request = parse_infer_request(body, request.headers.get(INFERENCE_HEADER))
            model, outputs = await run_inference(backend, name, version, infer_request)
        used_version = version or (model.versions[0] if model.versions else "")
        content, headers = encode_infer_response(name, used_version, infer_request.id, outputs)
        return Response(content, headers=headers)

    _add_model_route(
        router, "", model_metadata, "GET", dependencies=guarded, summary="Model metadata",
        responses={200: {"model": ModelMetadataOut}, **_errors(401, 404)},
    )  # fmt: skip
    _add_model_route(
        router, "/config", model_config, "GET", dependencies=guarded,
        summary="Model configuration (Triton's extension, read by its tools)",
        responses={200: {"model": ModelConfigOut}, **_errors(401, 404)},
    )  # fmt: skip
    _add_model_route(
        router, "/ready", model_ready, "GET", summary="Model readiness",
        responses={200: {"model": ModelReadyOut}, **_errors(404, 503)},
    )  # fmt: skip
    _add_model_route(
        router, "/infer", model_infer, "POST", dependencies=guarded,
        summary="Inference (JSON, or JSON and binary tensor data)",
        responses={
            200: {"model": InferResponseOut, "content": {"application/octet-stream": {}}},
            **_errors(400, 401, 404, 413, 415, 422, 503, 504),
        },
        openapi_extra=_infer_openapi(),
    )  # fmt: skip
    return router
