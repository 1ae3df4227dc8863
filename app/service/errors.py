"""Exceptions of the pipeline -> HTTP answers, all as ``{"detail": "<stable message>"}``.

=========================  ======  =====================================================
exception                  status  detail
=========================  ======  =====================================================
``ImageError``             4xx     its own message (see :mod:`app.imaging`)
``Overloaded``             503     ``server busy: too many requests in progress, retry later``
                                   (+ ``Retry-After: 1``)
``ShuttingDown``           503     ``the service is shutting down``
``InferenceOutOfMemory``   503     ``out of memory during inference, retry later``
                                   (+ ``Retry-After: 1``)
``DeadlineExceeded``       504     ``request timed out after N s``
``InferenceFailed``        500     ``inference failed`` (logged with its traceback)
=========================  ======  =====================================================
"""

from __future__ import annotations

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
from app.service.settings import Settings

RETRY_AFTER_S = "1"


def install_error_handlers(app: FastAPI, settings: Settings, metrics: ServiceMetrics) -> None:
    """Register the handlers of the table above on ``app``."""

    def answer(status: int, detail: str, retry: bool = False) -> JSONResponse:
        headers = {"Retry-After": RETRY_AFTER_S} if retry else None
        return JSONResponse({"detail": detail}, status_code=status, headers=headers)

    async def image_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ImageError)
        return answer(exc.status_code, exc.message)

    async def overloaded(_: Request, exc: Exception) -> JSONResponse:
        metrics.rejected.labels(reason="overload").inc()
        return answer(503, "server busy: too many requests in progress, retry later", retry=True)

    async def shutting_down(_: Request, exc: Exception) -> JSONResponse:
        metrics.rejected.labels(reason="shutdown").inc()
        return answer(503, "the service is shutting down")

    async def out_of_memory(_: Request, exc: Exception) -> JSONResponse:
        return answer(503, "out of memory during inference, retry later", retry=True)

    async def deadline(_: Request, exc: Exception) -> JSONResponse:
        metrics.rejected.labels(reason="timeout").inc()
        return answer(504, f"request timed out after {settings.request_timeout_s:g} s")

    async def failed(_: Request, exc: Exception) -> JSONResponse:
        metrics.rejected.labels(reason="error").inc()
        return answer(500, "inference failed")

    app.add_exception_handler(ImageError, image_error)
    app.add_exception_handler(Overloaded, overloaded)
    app.add_exception_handler(ShuttingDown, shutting_down)
    app.add_exception_handler(InferenceOutOfMemory, out_of_memory)
    app.add_exception_handler(DeadlineExceeded, deadline)
    app.add_exception_handler(InferenceFailed, failed)
