"""Exceptions of the inference engine -> answers, in one table shared by the service's own
routes (``{"detail": "<stable message>"}``) and the Open Inference Protocol (``{"error": ...}``
over HTTP, a status code and details over gRPC).

=========================  ======  =====================================================
exception                  status  message
=========================  ======  =====================================================
``ImageError``             4xx     its own message (see :mod:`app.imaging`)
``ServingError``           4xx/5xx its own status and message (model not loaded 404, not
                                   ready 503, load refused or failed; see
                                   :mod:`app.service.serving_errors`)
``Overloaded``             503     ``server busy: too many requests in progress, retry later``
                                   (+ ``Retry-After: 1``)
``ShuttingDown``           503     ``the service is shutting down``
``InferenceOutOfMemory``   503     ``out of memory during inference, retry later``
                                   (+ ``Retry-After: 1``)
``DeadlineExceeded``       504     ``request timed out after N s``
``InferenceFailed``        500     ``inference failed`` (logged with its traceback)
=========================  ======  =====================================================

Overload, shutdown, timeout and failure are counted in ``spp_rejected_total{reason}`` whichever
protocol answered (out of memory is counted by the inference worker).
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from app.imaging import ImageError
from app.service.batching import (
    DeadlineExceeded,
    InferenceFailed,
    InferenceOutOfMemory,
    Overloaded,
    ShuttingDown,
)
from app.service.metrics import ServiceMetrics
from app.service.oip.protocol_errors import ErrorTranslator, OipError
from app.service.serving_errors import ServingError
from app.service.settings import Settings

RETRY_AFTER_S = "1"


@dataclass(frozen=True)
class EngineErrorAnswer:
    """How one engine exception is answered: HTTP status, message (``{timeout}``: the request
    timeout in seconds), whether to send ``Retry-After``, and its ``spp_rejected_total``
    reason (``None``: not counted here)."""

    status_code: int
    message: str
    retry: bool = False
    reject_reason: str | None = None


#: The table of the module docstring (``ImageError`` carries its own status and message).
ENGINE_ERRORS: dict[type[Exception], EngineErrorAnswer] = {
    Overloaded: EngineErrorAnswer(
        503, "server busy: too many requests in progress, retry later", True, "overload"
    ),
    ShuttingDown: EngineErrorAnswer(503, "the service is shutting down", False, "shutdown"),
    InferenceOutOfMemory: EngineErrorAnswer(
        503, "out of memory during inference, retry later", True
    ),
    DeadlineExceeded: EngineErrorAnswer(
        504, "request timed out after {timeout:g} s", False, "timeout"
    ),
    InferenceFailed: EngineErrorAnswer(500, "inference failed", False, "error"),
}


def engine_error_answer(
    exc: Exception, settings: Settings, metrics: ServiceMetrics
) -> tuple[int, str, dict[str, str]] | None:
    """``(status, message, headers)`` for an engine exception, counted in the rejection
    metrics; ``None`` for an exception not in the table."""
    if isinstance(exc, ImageError):
        return exc.status_code, exc.message, {}
    if isinstance(exc, ServingError):
        return exc.status_code, exc.message, exc.headers
    answer = ENGINE_ERRORS.get(type(exc))
    if answer is None:
        return None
    if answer.reject_reason is not None:
        metrics.rejected.labels(reason=answer.reject_reason).inc()
    headers = {"Retry-After": RETRY_AFTER_S} if answer.retry else {}
    return answer.status_code, answer.message.format(timeout=settings.request_timeout_s), headers


def install_error_handlers(app: FastAPI, settings: Settings, metrics: ServiceMetrics) -> None:
    """Register the table's answers as ``{"detail": message}`` handlers on ``app``."""

    async def handle(_: Request, exc: Exception) -> JSONResponse:
        answer = engine_error_answer(exc, settings, metrics)
        assert answer is not None, "registered for the table's exceptions only"
        status, message, headers = answer
        return JSONResponse({"detail": message}, status_code=status, headers=headers or None)

    kinds: list[type[Exception]] = [ImageError, ServingError, *ENGINE_ERRORS]
    for kind in kinds:
        app.add_exception_handler(kind, handle)


def oip_error_translator(settings: Settings, metrics: ServiceMetrics) -> ErrorTranslator:
    """The table's answers as Open Inference Protocol errors (``None``: not an engine error)."""

    def translate(exc: Exception) -> OipError | None:
        answer = engine_error_answer(exc, settings, metrics)
        if answer is None:
            return None
        status, message, headers = answer
        return OipError(status, message, headers)

    return translate
