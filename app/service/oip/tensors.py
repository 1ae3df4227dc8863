"""Tensor data of the Open Inference Protocol: datatypes, raw bytes and JSON lists <-> numpy.

A tensor is a numpy array whose dtype matches its protocol datatype (:data:`NUMPY_DTYPES`);
a ``BYTES`` tensor is an ``object`` array of ``bytes``. Raw data (Triton's binary extension,
gRPC's ``raw_*_contents``) is the elements flattened row-major, little-endian, no padding; a
``BYTES`` element is a 4-byte little-endian unsigned length and then its bytes.

In JSON a ``BYTES`` element is a string: base64 (the convention of KServe and MLServer) or the
text itself (what ``tritonclient`` sends with ``binary_data=False``). A string is read as
base64 when the input's ``content_type`` parameter says ``"base64"`` or, without one, when
it is valid padded base64; otherwise (or with ``content_type: "str"``) its UTF-8 bytes are
the element. Answers write ``BYTES`` as plain strings (this service's labels are text).
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from app.service.oip.protocol_errors import bad_request

#: Protocol datatype -> numpy dtype (little-endian); ``BYTES`` elements are Python ``bytes``.
NUMPY_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
_LENGTH = struct.Struct("<I")


def check_datatype(name: str, datatype: str) -> np.dtype[Any]:
    """The numpy dtype of a protocol datatype; an unknown one is a 400."""
    if datatype not in NUMPY_DTYPES:
        raise bad_request(
            f"input '{name}' has unsupported datatype {datatype!r}: expected one of "
            + ", ".join(NUMPY_DTYPES)
        )
    return NUMPY_DTYPES[datatype]


def check_shape(name: str, shape: object) -> tuple[int, ...]:
    """A shape from a request: a list of non-negative integers."""
    if not isinstance(shape, list | tuple) or not all(
        isinstance(dim, int) and not isinstance(dim, bool) and dim >= 0 for dim in shape
    ):
        shown = f"{shape!r:.60}"  # a long shape is cut short in the message
        raise bad_request(f"input '{name}' has invalid shape {shown}: expected [d0, d1, ...]")
    return tuple(shape)


def element_count(shape: Sequence[int]) -> int:
    """Number of elements of a tensor of ``shape`` (1 for ``[]``)."""
    return math.prod(shape)


def split_bytes_elements(name: str, raw: bytes | memoryview) -> list[bytes]:
    """Raw ``BYTES`` data -> its elements (each a 4-byte LE length, then the bytes)."""
    view = memoryview(raw)
    elements: list[bytes] = []
    offset = 0
    while offset < len(view):
        if offset + _LENGTH.size > len(view):
            raise bad_request(f"input '{name}': BYTES data ends inside an element's length")
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += _LENGTH.size
        if offset + length > len(view):
            raise bad_request(
                f"input '{name}': BYTES element of {length} bytes, only {len(view) - offset} left"
            )
        elements.append(bytes(view[offset : offset + length]))
        offset += length
    return elements


def join_bytes_elements(elements: Iterable[bytes]) -> bytes:
    """``BYTES`` elements -> raw data (each a 4-byte LE length, then the bytes)."""
    return b"".join(_LENGTH.pack(len(item)) + item for item in elements)


def tensor_from_raw(
    name: str, datatype: str, shape: Sequence[int], raw: bytes | memoryview
) -> np.ndarray:
    """Raw data -> array of ``shape`` (``object`` of ``bytes`` for ``BYTES``); a size that does
    not match the shape is a 400."""
    dtype = check_datatype(name, datatype)
    count = element_count(shape)
    if datatype == "BYTES":
        elements = split_bytes_elements(name, raw)
        if len(elements) != count:
            raise bad_request(
                f"input '{name}': shape {list(shape)} needs {count} BYTES elements, "
                f"got {len(elements)}"
            )
        return _object_array(elements, shape)
    expected = count * dtype.itemsize
    if len(raw) != expected:
        raise bad_request(
            f"input '{name}': shape {list(shape)} of {datatype} needs {expected} bytes, "
            f"got {len(raw)}"
        )
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def tensor_from_json(
    name: str,
    datatype: str,
    shape: Sequence[int],
    data: object,
    parameters: Mapping[str, object],
) -> np.ndarray:
    """A JSON ``data`` value (flat or nested lists) -> array of ``shape``."""
    dtype = check_datatype(name, datatype)
    elements = _flatten(data)
    count = element_count(shape)
    if len(elements) != count:
        raise bad_request(
            f"input '{name}': shape {list(shape)} needs {count} elements, got {len(elements)}"
        )
    if datatype == "BYTES":
        content_type = parameters.get("content_type")
        return _object_array([_json_bytes(name, item, content_type) for item in elements], shape)
    if datatype == "BOOL":
        valid = all(isinstance(item, bool) for item in elements)
    else:
        valid = all(
            isinstance(item, int | float) and not isinstance(item, bool) for item in elements
        )
    if not valid:
        raise bad_request(f"input '{name}': {datatype} data must be a list of numbers")
    try:
        return np.asarray(elements, dtype=dtype).reshape(shape)
    except (OverflowError, ValueError):
        raise bad_request(f"input '{name}': a value does not fit in {datatype}") from None


def tensor_to_raw(array: np.ndarray, datatype: str) -> bytes:
    """Array -> raw data (``BYTES``: length-prefixed elements)."""
    if datatype == "BYTES":
        return join_bytes_elements(array.reshape(-1).tolist())
    return np.ascontiguousarray(array, dtype=NUMPY_DTYPES[datatype]).tobytes()


def tensor_to_json(array: np.ndarray, datatype: str) -> list[Any]:
    """Array -> flat JSON list (``BYTES`` as UTF-8 strings; floats keep their float32 value)."""
    flat = array.reshape(-1)
    if datatype == "BYTES":
        return [item.decode("utf-8") for item in flat.tolist()]
    return flat.tolist()


def _flatten(data: object) -> list[Any]:
    """Nested lists -> their leaves in row-major order (iteratively: any depth)."""
    flat: list[Any] = []
    stack: list[Any] = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            flat.append(item)
    return flat


def _json_bytes(name: str, item: object, content_type: object) -> bytes:
    if not isinstance(item, str):
        raise bad_request(f"input '{name}': BYTES data must be a list of strings")
    if content_type == "str":
        return item.encode("utf-8")
    try:
        return base64.b64decode(item, validate=True)
    except (binascii.Error, ValueError):
        if content_type == "base64":
            raise bad_request(f"input '{name}': content_type is base64, data is not") from None
        return item.encode("utf-8")


def _object_array(elements: list[bytes], shape: Sequence[int]) -> np.ndarray:
    array = np.empty(len(elements), dtype=object)
    array[:] = elements
    return array.reshape(shape)
