"""Per-request bookkeeping as a plain ASGI middleware: request id, metrics, one log line.

- ``X-Request-ID``: taken from the request when it is a short token (letters, digits,
  ``._:-``, at most 128 characters), else a fresh UUID; echoed on the response and stored in
  ``request.state.request_id``.
- Metrics: in-flight gauge, requests by route template / method / status / model (the one a
  route put in ``request.state.model_name``), latency per route.
- Log: one JSON line per request with id, method, route, path, status, duration and the stage
  timings a route put in ``request.state.timings_ms``. Headers and bodies are never logged.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.service.metrics import ServiceMetrics

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
logger = logging.getLogger("app.service.access")


def route_label(scope: Scope) -> str:
    """The matched route's path template (bounded label cardinality), or ``unmatched``."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else "unmatched"


class RequestContextMiddleware:
    """Request id, metrics and the access log line for every HTTP request."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500
        started = time.perf_counter()
        self.metrics.in_flight.inc()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            duration = time.perf_counter() - started
            self.metrics.in_flight.dec()
            route = route_label(scope)
            model = state.get("model_name", "")
            self.metrics.observe_request(
                route=route,
                method=scope["method"],
                status=str(status),
                duration_s=duration,
                model=model,
            )
            fields: dict[str, Any] = {
                "request_id": request_id,
                "method": scope["method"],
                "route": route,
                "path": scope.get("path", ""),
                "status": status,
                "duration_ms": round(duration * 1000.0, 3),
            }
            timings = state.get("timings_ms")
            if timings:
                fields["timings_ms"] = timings
            if model:
                fields["model"] = model
            if status >= 500:
                level = logging.WARNING if status in (503, 504) else logging.ERROR
            else:
                level = logging.INFO
            logger.log(level, "request", extra={"fields": fields})
