"""HTTP bodies of the Open Inference Protocol <-> :class:`~app.service.oip.messages.InferRequest`
and answers, in JSON or with Triton's binary tensor data extension. No web framework here.

A binary request or answer is a JSON header, then the raw tensors one after another; the
``Inference-Header-Content-Length`` HTTP header gives the JSON part's length, and each tensor
that travels in binary has ``parameters.binary_data_size`` (its byte count) instead of
``data``. An answer output is binary when its requested output says ``binary_data: true``, or,
when it does not say, when the request's ``binary_data_output`` parameter is true.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from app.service.oip.messages import InferRequest, InputTensor, OutputTensor, RequestedOutput
from app.service.oip.protocol_errors import bad_request
from app.service.oip.tensors import (
    check_shape,
    tensor_from_json,
    tensor_from_raw,
    tensor_to_json,
    tensor_to_raw,
)

INFERENCE_HEADER = "Inference-Header-Content-Length"
JSON_TYPE = "application/json"
BINARY_TYPE = "application/octet-stream"
#: Parameters of tensors this server does not implement (Triton's shared-memory extension).
_UNSUPPORTED = ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset")


def parse_infer_request(body: bytes, header_length: str | None = None) -> InferRequest:
    """An HTTP inference request body -> :class:`InferRequest` (400 :class:`OipError` when it
    is not a valid one).

    Args:
        body: the whole request body.
        header_length: the ``Inference-Header-Content-Length`` header, when present: the JSON
            part is ``body[:header_length]`` and the binary tensor data follows it.
    """
    json_end = len(body)
    if header_length is not None:
        try:
            json_end = int(header_length)
        except ValueError:
            raise bad_request(f"invalid {INFERENCE_HEADER}: {header_length[:32]!r}") from None
        if not 0 < json_end <= len(body):
            raise bad_request(f"{INFERENCE_HEADER} is {json_end}, the body has {len(body)} bytes")
    header = _load_json(body[:json_end])
    binary = memoryview(body)[json_end:]
    parameters = _parameters(header.get("parameters"), "request")
    inputs_json = header.get("inputs")
    if not isinstance(inputs_json, list):
        raise bad_request("expected 'inputs', a list of tensors")
    inputs = []
    offset = 0
    for item in inputs_json:
        tensor, used = _parse_input(item, binary[offset:])
        inputs.append(tensor)
        offset += used
    if offset != len(binary):
        raise bad_request(
            f"{len(binary) - offset} bytes of binary data after the inputs' binary_data_size"
        )
    request_id = header.get("id", "")
    if not isinstance(request_id, str):
        raise bad_request("'id' must be a string")
    binary_outputs = parameters.get("binary_data_output", False)
    if not isinstance(binary_outputs, bool):
        raise bad_request("parameter 'binary_data_output' must be true or false")
    return InferRequest(
        inputs=inputs,
        parameters=parameters,
        outputs=_parse_outputs(header.get("outputs")),
        id=request_id,
        binary_outputs=binary_outputs,
    )


def encode_infer_response(
    model_name: str, model_version: str, request_id: str, outputs: list[OutputTensor]
) -> tuple[bytes, dict[str, str]]:
    """An answer -> (body, headers): JSON alone, or JSON then the binary outputs in order
    with ``Inference-Header-Content-Length`` and ``application/octet-stream``."""
    described: list[dict[str, Any]] = []
    raw_parts: list[bytes] = []
    for output in outputs:
        entry: dict[str, Any] = {
            "name": output.name,
            "datatype": output.datatype,
            "shape": list(output.data.shape),
        }
        if output.binary:
            raw = tensor_to_raw(output.data, output.datatype)
            entry["parameters"] = {"binary_data_size": len(raw)}
            raw_parts.append(raw)
        else:
            entry["data"] = tensor_to_json(output.data, output.datatype)
        described.append(entry)
    answer: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id:
        answer["id"] = request_id
    answer["outputs"] = described
    header = json.dumps(answer, separators=(",", ":")).encode("utf-8")
    if not raw_parts:
        return header, {"Content-Type": JSON_TYPE}
    body = b"".join([header, *raw_parts])
    return body, {"Content-Type": BINARY_TYPE, INFERENCE_HEADER: str(len(header))}


def _load_json(data: bytes | memoryview) -> dict[str, Any]:
    try:
        header = json.loads(bytes(data))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise bad_request("malformed JSON in the inference request") from None
    if not isinstance(header, dict):
        raise bad_request("expected a JSON object as the inference request")
    return header


def _parameters(value: object, owner: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request(f"{owner} 'parameters' must be a JSON object")
    unsupported = [name for name in _UNSUPPORTED if name in value]
    if unsupported:
        raise bad_request(f"shared memory is not supported ({unsupported[0]})")
    return value


def _parse_input(item: object, binary: memoryview) -> tuple[InputTensor, int]:
    """One JSON input (and its binary data, taken from the start of ``binary``) -> (tensor,
    bytes of ``binary`` it used)."""
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise bad_request("each input must be an object with a 'name'")
    name = item["name"]
    datatype = item.get("datatype")
    if not isinstance(datatype, str):
        raise bad_request(f"input '{name}' has no 'datatype'")
    shape = check_shape(name, item.get("shape"))
    parameters = _parameters(item.get("parameters"), f"input '{name}'")
    size = parameters.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise bad_request(f"input '{name}': binary_data_size must be a non-negative integer")
        if size > len(binary):
            raise bad_request(
                f"input '{name}': binary_data_size is {size}, {len(binary)} bytes are left"
            )
        if "data" in item:
            raise bad_request(f"input '{name}' has both 'data' and binary_data_size")
        data = tensor_from_raw(name, datatype, shape, binary[:size])
        return InputTensor(name, datatype, shape, data), size
    if "data" not in item:
        raise bad_request(f"input '{name}' has neither 'data' nor binary_data_size")
    data = tensor_from_json(name, datatype, shape, item["data"], parameters)
    return InputTensor(name, datatype, shape, data), 0


def _parse_outputs(value: object) -> list[RequestedOutput] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise bad_request("'outputs' must be a list")
    requested = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise bad_request("each requested output must be an object with a 'name'")
        parameters: Mapping[str, Any] = _parameters(item.get("parameters"), "output")
        if parameters.get("classification"):
            raise bad_request("the classification extension is not supported")
        binary = parameters.get("binary_data")
        if binary is not None and not isinstance(binary, bool):
            raise bad_request(f"output '{item['name']}': binary_data must be true or false")
        requested.append(RequestedOutput(item["name"], binary))
    return requested
