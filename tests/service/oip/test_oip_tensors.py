"""Tensor data: raw bytes and JSON lists <-> numpy, against hand-built bytes."""

from __future__ import annotations

import base64
import struct

import numpy as np
import pytest

from app.service.oip.protocol_errors import OipError
from app.service.oip.tensors import (
    NUMPY_DTYPES,
    join_bytes_elements,
    split_bytes_elements,
    tensor_from_json,
    tensor_from_raw,
    tensor_to_json,
    tensor_to_raw,
)


def test_bytes_elements_are_length_prefixed_little_endian() -> None:
    raw = b"\x03\x00\x00\x00abc" + b"\x00\x00\x00\x00" + b"\x01\x00\x00\x00\xff"
    assert split_bytes_elements("X", raw) == [b"abc", b"", b"\xff"]
    assert join_bytes_elements([b"abc", b"", b"\xff"]) == raw
    assert split_bytes_elements("X", b"") == []


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x03\x00", "input 'X': BYTES data ends inside an element's length"),
        (b"\x05\x00\x00\x00abc", "input 'X': BYTES element of 5 bytes, only 3 left"),
    ],
)
def test_truncated_bytes_elements_are_400(raw: bytes, message: str) -> None:
    with pytest.raises(OipError) as caught:
        split_bytes_elements("X", raw)
    assert (caught.value.status_code, caught.value.message) == (400, message)


def test_raw_numeric_tensor() -> None:
    raw = struct.pack("<4f", 1.0, -2.5, 3.25, 0.0)
    array = tensor_from_raw("X", "FP32", [2, 2], raw)
    np.testing.assert_array_equal(array, np.float32([[1.0, -2.5], [3.25, 0.0]]))
    assert tensor_to_raw(array, "FP32") == raw
    assert tensor_to_raw(np.int64([1, -1]), "INT64") == struct.pack("<2q", 1, -1)


def test_raw_size_must_match_shape() -> None:
    with pytest.raises(OipError, match=r"shape \[3\] of FP32 needs 12 bytes, got 8"):
        tensor_from_raw("X", "FP32", [3], b"\x00" * 8)
    with pytest.raises(OipError, match=r"shape \[2\] needs 2 BYTES elements, got 1"):
        tensor_from_raw("X", "BYTES", [2], b"\x01\x00\x00\x00a")


@pytest.mark.parametrize("datatype", [d for d in NUMPY_DTYPES if d != "BYTES"])
def test_raw_round_trip_every_numeric_datatype(datatype: str) -> None:
    values = np.arange(6).reshape(2, 3).astype(NUMPY_DTYPES[datatype])
    back = tensor_from_raw("X", datatype, [2, 3], tensor_to_raw(values, datatype))
    np.testing.assert_array_equal(back, values)
    assert back.dtype == NUMPY_DTYPES[datatype]


def test_json_bytes_base64_or_text() -> None:
    payload = b"\x89PNG\r\n\x1a\n\x00\xff"
    encoded = base64.b64encode(payload).decode()
    assert tensor_from_json("X", "BYTES", [1], [encoded], {}).tolist() == [payload]
    # not valid base64: the text's UTF-8 bytes (what tritonclient sends for str data)
    assert tensor_from_json("X", "BYTES", [2], ["héllo", "a b"], {}).tolist() == [
        "héllo".encode(),
        b"a b",
    ]
    # content_type decides when given
    assert tensor_from_json("X", "BYTES", [1], ["abcd"], {"content_type": "str"}).tolist() == [
        b"abcd"
    ]
    assert tensor_from_json("X", "BYTES", [1], ["abcd"], {}).tolist() == [b"i\xb7\x1d"]
    with pytest.raises(OipError, match="content_type is base64, data is not"):
        tensor_from_json("X", "BYTES", [1], ["not base64!"], {"content_type": "base64"})


def test_json_nested_and_flat_data() -> None:
    nested = tensor_from_json("X", "INT32", [2, 2], [[1, 2], [3, 4]], {})
    flat = tensor_from_json("X", "INT32", [2, 2], [1, 2, 3, 4], {})
    np.testing.assert_array_equal(nested, np.int32([[1, 2], [3, 4]]))
    np.testing.assert_array_equal(flat, nested)
    assert tensor_from_json("X", "BOOL", [2], [True, False], {}).tolist() == [True, False]


@pytest.mark.parametrize(
    ("datatype", "data", "message"),
    [
        ("FP32", [1.0, 2.0], r"shape \[3\] needs 3 elements, got 2"),
        ("FP32", ["1", 2, 3], "FP32 data must be a list of numbers"),
        ("INT8", [True, 1, 2], "INT8 data must be a list of numbers"),
        ("UINT8", [1, 2, 300], "a value does not fit in UINT8"),
        ("BYTES", [1, 2, 3], "BYTES data must be a list of strings"),
        ("BF16", [1, 2, 3], "unsupported datatype 'BF16'"),
    ],
)
def test_json_errors(datatype: str, data: list[object], message: str) -> None:
    with pytest.raises(OipError, match=message) as caught:
        tensor_from_json("X", datatype, [3], data, {})
    assert caught.value.status_code == 400


def test_to_json_keeps_float32_values_and_text() -> None:
    assert tensor_to_json(np.float32([[0.1, 2.0]]), "FP32") == [float(np.float32(0.1)), 2.0]
    labels = np.array([b"circle", "carré".encode()], dtype=object)
    assert tensor_to_json(labels, "BYTES") == ["circle", "carré"]
    assert tensor_to_json(np.zeros((0, 4), np.float32), "FP32") == []
