"""Inputs for the real ``tritonclient`` (gRPC and HTTP) and the check of the errors it raises,
shared by the v2 tests over the fake engine and over the real service."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException


def grpc_tensor(name: str, shape: list[int], datatype: str, array: np.ndarray) -> Any:
    """A gRPC input tensor holding ``array``."""
    tensor = grpcclient.InferInput(name, shape, datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def grpc_image(data: bytes) -> list[Any]:
    """The inputs of one gRPC inference: ``IMAGE`` BYTES [1] holding the file ``data``."""
    return [grpc_tensor("IMAGE", [1], "BYTES", np.array([data], dtype=object))]


def http_tensor(name: str, shape: list[int], datatype: str, array: np.ndarray) -> Any:
    """An HTTP input tensor holding ``array`` (sent as binary data)."""
    tensor = httpclient.InferInput(name, shape, datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def http_image(data: bytes, binary: bool = True) -> Any:
    """``IMAGE`` as tritonclient sends it: raw bytes in binary, base64 text in JSON (JSON
    strings must be UTF-8, so a client base64-encodes the file itself)."""
    tensor = httpclient.InferInput("IMAGE", [1], "BYTES")
    element = data if binary else base64.b64encode(data)
    tensor.set_data_from_numpy(np.array([element], dtype=object), binary_data=binary)
    return tensor


def labels_text(values: np.ndarray) -> list[str]:
    """LABELS as str, whether they came as bytes (binary) or str (JSON)."""
    return [v.decode() if isinstance(v, bytes) else v for v in values.tolist()]


def expect_error(status: str, message: str, call: Any, *args: Any, **kwargs: Any) -> None:
    """``call(*args, **kwargs)`` raises tritonclient's error with exactly ``status`` (an HTTP
    code as text, or ``StatusCode.NAME`` over gRPC) and ``message``."""
    with pytest.raises(InferenceServerException) as caught:
        call(*args, **kwargs)
    assert (caught.value.status(), caught.value.message()) == (status, message)
