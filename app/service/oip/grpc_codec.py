"""The protocol's gRPC messages <-> :class:`~app.service.oip.messages.InferRequest` and answers.

Inputs arrive either raw (``raw_input_contents``, one entry per input, laid out as in
:mod:`app.service.oip.tensors`) or typed (``contents``, the repeated field of the datatype).
Answers always carry their outputs in ``raw_output_contents``, as Triton's server does (what
``tritonclient.grpc`` reads first).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from app.service.oip.messages import InferRequest, InputTensor, OutputTensor, RequestedOutput
from app.service.oip.protocol import Protocol
from app.service.oip.protocol_errors import bad_request
from app.service.oip.tensors import (
    check_datatype,
    check_shape,
    element_count,
    tensor_from_raw,
    tensor_to_raw,
)

#: Datatype -> field of ``InferTensorContents`` holding it (FP16 travels raw only).
CONTENTS_FIELDS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_UNSUPPORTED = ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset")


def parameter_values(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """A ``map<string, InferParameter>`` -> ``{name: bool | int | float | str}``."""
    values: dict[str, Any] = {}
    for name, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        if choice is not None:
            values[name] = getattr(parameter, choice)
    return values


def request_from_proto(message: Any) -> InferRequest:
    """A ``ModelInferRequest`` -> :class:`InferRequest` (400 ``OipError`` when invalid)."""
    raw = list(message.raw_input_contents)
    if raw and len(raw) != len(message.inputs):
        raise bad_request(
            f"raw_input_contents has {len(raw)} entries for {len(message.inputs)} inputs"
        )
    inputs = [
        _input_from_proto(tensor, raw[index] if raw else None)
        for index, tensor in enumerate(message.inputs)
    ]
    outputs = None
    if message.outputs:
        outputs = []
        for output in message.outputs:
            if "classification" in parameter_values(output.parameters):
                raise bad_request("the classification extension is not supported")
            outputs.append(RequestedOutput(output.name))
    return InferRequest(
        inputs=inputs,
        parameters=parameter_values(message.parameters),
        outputs=outputs,
        id=message.id,
        binary_outputs=True,
    )


def response_to_proto(
    protocol: Protocol, model_name: str, model_version: str, request_id: str,
    outputs: list[OutputTensor],
) -> Any:  # fmt: skip
    """An answer -> ``ModelInferResponse`` with every output in ``raw_output_contents``."""
    response = protocol.message("ModelInferResponse")(
        model_name=model_name, model_version=model_version, id=request_id
    )
    for output in outputs:
        tensor = response.outputs.add()
        tensor.name = output.name
        tensor.datatype = output.datatype
        tensor.shape.extend(output.data.shape)
        response.raw_output_contents.append(tensor_to_raw(output.data, output.datatype))
    return response


def _input_from_proto(tensor: Any, raw: bytes | None) -> InputTensor:
    name = tensor.name
    shape = check_shape(name, list(tensor.shape))
    parameters = parameter_values(tensor.parameters)
    unsupported = [key for key in _UNSUPPORTED if key in parameters]
    if unsupported:
        raise bad_request(f"shared memory is not supported ({unsupported[0]})")
    datatype = tensor.datatype
    dtype = check_datatype(name, datatype)
    if raw is not None:
        return InputTensor(name, datatype, shape, tensor_from_raw(name, datatype, shape, raw))
    field = CONTENTS_FIELDS.get(datatype)
    if field is None:
        raise bad_request(f"input '{name}': {datatype} data must be sent raw")
    values = list(getattr(tensor.contents, field))
    count = element_count(shape)
    if len(values) != count:
        raise bad_request(
            f"input '{name}': shape {list(shape)} needs {count} elements, got {len(values)}"
        )
    if datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = values
    else:
        try:
            array = np.asarray(values, dtype=dtype)
        except OverflowError:
            raise bad_request(f"input '{name}': a value does not fit in {datatype}") from None
    return InputTensor(name, datatype, shape, array.reshape(shape))
