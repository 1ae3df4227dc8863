"""Errors of the Open Inference Protocol: an HTTP status and a short, stable message.

Over HTTP an :class:`OipError` becomes ``{"error": message}`` with its status; over gRPC, the
status code of :func:`grpc_code` with the message as details.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from grpc import StatusCode

#: HTTP status -> gRPC status code (the usual mapping; 4xx not listed -> INVALID_ARGUMENT).
_GRPC_CODES = {
    401: StatusCode.UNAUTHENTICATED,
    403: StatusCode.PERMISSION_DENIED,
    404: StatusCode.NOT_FOUND,
    429: StatusCode.RESOURCE_EXHAUSTED,
    500: StatusCode.INTERNAL,
    501: StatusCode.UNIMPLEMENTED,
    503: StatusCode.UNAVAILABLE,
    504: StatusCode.DEADLINE_EXCEEDED,
}


class OipError(Exception):
    """A request the protocol answers with an error.

    Args:
        status_code: HTTP status (400 bad request, 404 unknown model, 503 not ready, ...).
        message: what was expected and what came, e.g.
            ``"input 'IMAGE' expects datatype BYTES, got FP32"``.
        headers: extra HTTP headers (``Retry-After``), ignored over gRPC.
    """

    def __init__(
        self, status_code: int, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.headers = dict(headers or {})


#: Turns an exception of the engine (an image error, overload, deadline...) into the
#: protocol's answer, or ``None`` for one it does not know (re-raised: a server error).
ErrorTranslator = Callable[[Exception], OipError | None]


def no_translation(_: Exception) -> OipError | None:
    """The default :data:`ErrorTranslator`: knows no exception but :class:`OipError`."""
    return None


def bad_request(message: str) -> OipError:
    """A 400 with ``message``."""
    return OipError(400, message)


def grpc_code(status_code: int) -> StatusCode:
    """The gRPC status code for an HTTP status."""
    if status_code in _GRPC_CODES:
        return _GRPC_CODES[status_code]
    return StatusCode.INVALID_ARGUMENT if 400 <= status_code < 500 else StatusCode.INTERNAL
