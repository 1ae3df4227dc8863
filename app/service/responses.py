"""What the model routes share about their answers: the documented error responses, the
``Server-Timing`` header, and the choice between JSON and a drawn image.

Routes import this module, never each other.
"""

from __future__ import annotations

from typing import Any

from app.imaging import MEDIA_TYPES
from app.service.api_models import ErrorResponse

#: The error answers of /detect and /classify, for the OpenAPI document.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "empty, malformed or truncated upload",
        401: "API key missing or wrong (only when API_KEY is set)",
        404: "the model named by `model` is not loaded (the message names the loaded ones)",
        413: "upload or pixel count over the limit",
        415: "not a supported image or content type",
        422: "invalid options (a list of errors), or an image too small or too elongated",
        503: "model not ready, server busy (Retry-After), or out of memory",
        504: "the request's deadline passed",
    }.items()
}


def server_timing_header(timings: dict[str, float]) -> str:
    """``Server-Timing`` header value (``stage;dur=ms, ...``) for browser dev tools."""
    return ", ".join(f"{stage};dur={ms:.3f}" for stage, ms in timings.items())


def choose_format(explicit: str | None, accept: str | None) -> str:
    """``json``, ``png`` or ``jpeg``: the ``format`` parameter if given, else from ``Accept``.

    ``Accept`` entries are ranked by their ``q`` value (ties keep header order); the first
    of ``application/json``, ``image/png``, ``image/jpeg`` wins, and anything else (``*/*``,
    ``image/*``, no header) means JSON.
    """
    if explicit is not None:
        return explicit
    if not accept:
        return "json"
    ranked: list[tuple[float, int, str]] = []
    for position, entry in enumerate(accept.split(",")):
        media, *params = (part.strip() for part in entry.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            ranked.append((-quality, position, media.lower()))
    for _, _, media in sorted(ranked):
        if media == "application/json":
            return "json"
        for image_format, media_type in MEDIA_TYPES.items():
            if media == media_type:
                return image_format
    return "json"
