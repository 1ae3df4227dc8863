"""Reading an image upload from the request body, in memory, within a size limit.

Two encodings are accepted:

- ``multipart/form-data`` with the file in the field ``image`` (other small text fields are
  returned too: the route accepts its options as form fields; a route may name large fields,
  such as ``/detect``'s ``proposals``, with their own size limit);
- a raw body with ``Content-Type: image/*`` or ``application/octet-stream``.

The limit is enforced twice: a declared ``Content-Length`` above it is refused before a single
byte is read, and the body is counted while it streams in, so a chunked or lying client is
cut off at the limit (HTTP 413) without the body ever being held whole. Large fields count
against the same limit as the image: together they may not exceed it. Multipart parts are
collected in memory by ``python-multipart``'s streaming parser; nothing is spooled to disk.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from python_multipart.multipart import MultipartParser, parse_options_header

#: Bytes of multipart framing (boundaries, part headers, option fields) allowed on top of
#: the image itself.
MULTIPART_OVERHEAD = 64 * 1024
#: Most text fields a multipart body may carry besides the image, and their longest value.
MAX_FORM_FIELDS = 16
MAX_FIELD_BYTES = 4096
IMAGE_FIELD = "image"


@dataclass
class Upload:
    """An uploaded image, the small text fields sent with it, and the large fields the route
    asked for (raw bytes, as a text field or a file part)."""

    data: bytes
    content_type: str
    fields: dict[str, str] = field(default_factory=dict)
    large_fields: dict[str, bytes] = field(default_factory=dict)


def _too_large(limit: int) -> HTTPException:
    return HTTPException(413, f"upload too large: the limit is {limit} bytes")


class _MultipartCollector:
    """Callbacks for ``MultipartParser`` that keep the ``image`` part, small text fields and
    the named large fields (``large_fields``: name -> most bytes); the image and the large
    fields together may hold at most ``max_image_bytes``."""

    def __init__(self, max_image_bytes: int, large_fields: Mapping[str, int]) -> None:
        self.max_image_bytes = max_image_bytes
        self.large_limits = dict(large_fields)
        self.image: bytearray | None = None
        self.image_parts = 0
        self.fields: dict[str, str] = {}
        self.large_fields: dict[str, bytes] = {}
        self._counted = 0  # bytes of the image and the large fields so far
        self.finished = False
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, bytes] = {}
        self._name: str | None = None
        self._skip = False
        self._buffer = bytearray()

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self._headers = {}
        self._name = None
        self._buffer = bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_name.decode("latin-1").lower()] = bytes(self._header_value)
        self._header_name = bytearray()
        self._header_value = bytearray()

    def _headers_finished(self) -> None:
        disposition, params = parse_options_header(self._headers.get("content-disposition", b""))
        name = params.get(b"name")
        if disposition != b"form-data" or name is None:
            raise HTTPException(400, "malformed multipart body: a part has no form-data name")
        self._name = name.decode("utf-8", errors="replace")
        self._skip = False
        if self._name == IMAGE_FIELD:
            self.image_parts += 1
            if self.image_parts > 1:
                raise HTTPException(400, f"expected one '{IMAGE_FIELD}' field, got several")
        elif self._name in self.large_limits:
            if self._name in self.large_fields:
                raise HTTPException(400, f"expected one '{self._name}' field, got several")
        elif b"filename" in params:  # a file under another name: not ours, not kept
            self._skip = True
        elif len(self.fields) >= MAX_FORM_FIELDS:
            raise HTTPException(400, f"too many form fields (at most {MAX_FORM_FIELDS})")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._skip:
            return
        self._buffer += data[start:end]
        if self._name == IMAGE_FIELD or self._name in self.large_limits:
            self._counted += end - start
            if self._counted > self.max_image_bytes:
                raise _too_large(self.max_image_bytes)
            limit = self.large_limits.get(self._name or "")
            if limit is not None and len(self._buffer) > limit:
                raise HTTPException(413, f"form field '{self._name}' longer than {limit} bytes")
        elif len(self._buffer) > MAX_FIELD_BYTES:
            raise HTTPException(
                400, f"form field '{self._name}' longer than {MAX_FIELD_BYTES} bytes"
            )

    def _part_end(self) -> None:
        if self._name == IMAGE_FIELD:
            self.image = self._buffer
        elif self._name in self.large_limits:
            self.large_fields[self._name] = bytes(self._buffer)
        elif self._name is not None and not self._skip:
            self.fields[self._name] = self._buffer.decode("utf-8", errors="replace")
        self._buffer = bytearray()

    def _end(self) -> None:
        self.finished = True


async def read_upload(
    request: Request, *, max_bytes: int, large_fields: Mapping[str, int] | None = None
) -> Upload:
    """Read the image of ``request`` (multipart field ``image`` or a raw ``image/*`` body).

    Args:
        max_bytes: the most bytes of the image and the large fields together.
        large_fields: multipart fields kept whole in ``Upload.large_fields`` (name -> most
            bytes) instead of the small text fields' ``MAX_FIELD_BYTES``.

    Raises:
        HTTPException: 413 over ``max_bytes`` (before reading when ``Content-Length`` says
            so) or a large field over its limit, 415 for another content type, 400 for a
            malformed multipart body.
        RequestValidationError: (422) the ``image`` field is missing.
    """
    content_type = request.headers.get("content-type", "")
    media_type, params = parse_options_header(content_type)
    media = media_type.decode("latin-1").lower()
    is_multipart = media == "multipart/form-data"
    is_raw = media.startswith("image/") or media == "application/octet-stream"
    if not (is_multipart or is_raw):
        raise HTTPException(
            415,
            "unsupported content type: expected multipart/form-data with an 'image' field, "
            "or an image/* body",
        )
    body_limit = max_bytes + (MULTIPART_OVERHEAD if is_multipart else 0)
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            declared_bytes = int(declared)
        except ValueError:
            raise HTTPException(400, "invalid Content-Length header") from None
        if declared_bytes > body_limit:
            raise _too_large(max_bytes)
    if is_raw:
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > max_bytes:
                raise _too_large(max_bytes)
        return Upload(data=bytes(data), content_type=media)

    boundary = params.get(b"boundary")
    if not boundary:
        raise HTTPException(400, "malformed multipart body: no boundary in Content-Type")
    collector = _MultipartCollector(max_bytes, large_fields or {})
    try:
        parser = MultipartParser(boundary, collector.callbacks())  # type: ignore[arg-type]
    except Exception:
        raise HTTPException(400, "malformed multipart body: invalid boundary") from None
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > body_limit:
                raise _too_large(max_bytes)
            parser.write(chunk)
        parser.finalize()
    except HTTPException:
        raise
    except Exception:
        raise HTTPException(400, "malformed multipart body") from None
    if not collector.finished:
        raise HTTPException(400, "malformed multipart body: it ends before its closing boundary")
    if collector.image is None:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body", IMAGE_FIELD), "msg": "Field required"}]
        )
    return Upload(
        data=bytes(collector.image),
        content_type=media,
        fields=collector.fields,
        large_fields=collector.large_fields,
    )


def upload_openapi(option_fields: dict[str, dict[str, object]]) -> dict[str, object]:
    """``openapi_extra`` documenting the two accepted bodies of an image route.

    Args:
        option_fields: JSON schemas of the options also accepted as form fields.
    """
    binary = {"type": "string", "format": "binary"}
    multipart_schema = {
        "type": "object",
        "required": [IMAGE_FIELD],
        "properties": {IMAGE_FIELD: binary, **option_fields},
    }
    return {
        "requestBody": {
            "required": True,
            "description": "The image as multipart field 'image', or as the raw body.",
            "content": {
                "multipart/form-data": {"schema": multipart_schema},
                "image/png": {"schema": binary},
                "image/jpeg": {"schema": binary},
                "application/octet-stream": {"schema": binary},
            },
        }
    }


M = TypeVar("M", bound=BaseModel)


def merge_form_fields(model: type[M], from_query: M, fields: dict[str, str]) -> M:
    """Options from the query string, completed by the form fields sent with the image.

    A query parameter wins over a form field of the same name. Invalid or unknown form
    fields raise ``RequestValidationError`` (HTTP 422) located in ``body``.
    """
    if not fields:
        return from_query
    explicit = from_query.model_dump(exclude_unset=True)
    try:
        return model.model_validate({**fields, **explicit})
    except ValidationError as exc:
        errors = []
        for error in exc.errors(include_url=False):
            where = "query" if error["loc"] and error["loc"][0] in explicit else "body"
            errors.append({**error, "loc": (where, *error["loc"])})
        raise RequestValidationError(errors) from None


async def read_image_request(
    request: Request,
    model: type[M],
    from_query: M,
    *,
    max_bytes: int,
    timings: dict[str, float],
    large_fields: Mapping[str, int] | None = None,
) -> tuple[M, Upload]:
    """The upload of an inference route and its options (query completed by the small form
    fields; ``large_fields`` as in :func:`read_upload`); the read time goes into
    ``timings["read"]`` in milliseconds."""
    started = time.perf_counter()
    upload = await read_upload(request, max_bytes=max_bytes, large_fields=large_fields)
    timings["read"] = round((time.perf_counter() - started) * 1000.0, 3)
    return merge_form_fields(model, from_query, upload.fields), upload
