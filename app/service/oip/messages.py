"""The protocol's requests, answers and metadata as plain data, whatever the transport.

:mod:`app.service.oip.codec` (HTTP) and :mod:`app.service.oip.grpc_server` (gRPC) build an
:class:`InferRequest` from the wire; :func:`check_inputs` holds it against the model's
:class:`ModelMetadata`; :func:`build_outputs` checks the backend's arrays against the same
metadata and keeps the requested ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.service.oip.protocol_errors import OipError, bad_request
from app.service.oip.tensors import NUMPY_DTYPES

#: Request parameters that steer the protocol itself (Triton's reserved names), not the model.
RESERVED_PARAMETERS = frozenset(
    {
        "binary_data_output",
        "sequence_id",
        "sequence_start",
        "sequence_end",
        "priority",
        "timeout",
        "headers",
    }
)
#: The protocol extensions this server implements (``GET /v2``, ``ServerMetadata``).
EXTENSIONS = ("binary_tensor_data",)


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output: name, datatype and shape (``-1``: a dimension of any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        """``{"name", "datatype", "shape"}`` as in the protocol's metadata."""
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class ModelMetadata:
    """What ``GET /v2/models/{name}`` and ``ModelMetadata`` answer."""

    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def to_json(self) -> dict[str, Any]:
        """The protocol's JSON metadata object."""
        return {
            "name": self.name,
            "versions": list(self.versions),
            "platform": self.platform,
            "inputs": [spec.to_json() for spec in self.inputs],
            "outputs": [spec.to_json() for spec in self.outputs],
        }

    def to_triton_config(self) -> dict[str, Any]:
        """Triton's model configuration (its ``model_configuration`` extension, which Triton's
        tools such as ``perf_analyzer`` read) as far as the metadata tells it.

        ``max_batch_size`` is 0: the shapes have no batch dimension, as requests are batched
        inside the service, not by stacking tensors. Datatypes are Triton's ``TYPE_*`` names
        (``BYTES`` is ``TYPE_STRING``).
        """

        def tensor(spec: TensorSpec) -> dict[str, Any]:
            kind = "STRING" if spec.datatype == "BYTES" else spec.datatype
            return {"name": spec.name, "data_type": f"TYPE_{kind}", "dims": list(spec.shape)}

        return {
            "name": self.name,
            "platform": self.platform,
            "max_batch_size": 0,
            "input": [tensor(spec) for spec in self.inputs],
            "output": [tensor(spec) for spec in self.outputs],
        }


@dataclass(frozen=True)
class ServerMetadata:
    """What ``GET /v2`` and ``ServerMetadata`` answer."""

    name: str
    version: str
    extensions: tuple[str, ...] = EXTENSIONS

    def to_json(self) -> dict[str, Any]:
        """The protocol's JSON server metadata object."""
        return {"name": self.name, "version": self.version, "extensions": list(self.extensions)}


@dataclass(frozen=True)
class InputTensor:
    """One input as received: ``data`` has ``shape`` and the numpy dtype of ``datatype``."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray


@dataclass(frozen=True)
class RequestedOutput:
    """An output the client asked for; ``binary`` is ``None`` when it did not say how."""

    name: str
    binary: bool | None = None


@dataclass
class InferRequest:
    """One inference request, transport aside.

    ``outputs`` is ``None`` when the client asked for every output; ``binary_outputs`` is the
    request-level ``binary_data_output`` (the default of outputs that do not say).
    """

    inputs: list[InputTensor]
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: list[RequestedOutput] | None = None
    id: str = ""
    binary_outputs: bool = False

    def model_parameters(self) -> dict[str, Any]:
        """The request parameters meant for the model (without :data:`RESERVED_PARAMETERS`)."""
        return {k: v for k, v in self.parameters.items() if k not in RESERVED_PARAMETERS}


@dataclass(frozen=True)
class OutputTensor:
    """One output of an answer; ``binary`` says how HTTP sends it (gRPC always sends raw)."""

    name: str
    datatype: str
    data: np.ndarray
    binary: bool = False


def _shape_fits(shape: Sequence[int], spec: Sequence[int]) -> bool:
    return len(shape) == len(spec) and all(s in (-1, d) for d, s in zip(shape, spec, strict=True))


def check_inputs(request: InferRequest, model: ModelMetadata) -> dict[str, np.ndarray]:
    """The request's inputs by name, each checked against ``model.inputs`` (name, datatype,
    shape); a missing, unexpected, repeated or ill-typed input is a 400. Requested output
    names are checked too, so a bad request fails before any inference."""
    expected = {spec.name: spec for spec in model.inputs}
    arrays: dict[str, np.ndarray] = {}
    for tensor in request.inputs:
        spec = expected.get(tensor.name)
        if spec is None:
            raise bad_request(
                f"unexpected input '{tensor.name}' for model '{model.name}': expected "
                + ", ".join(expected)
            )
        if tensor.name in arrays:
            raise bad_request(f"input '{tensor.name}' given more than once")
        if tensor.datatype != spec.datatype:
            raise bad_request(
                f"input '{tensor.name}' expects datatype {spec.datatype}, got {tensor.datatype}"
            )
        if not _shape_fits(tensor.shape, spec.shape):
            raise bad_request(
                f"input '{tensor.name}' expects shape {list(spec.shape)}, got {list(tensor.shape)}"
            )
        arrays[tensor.name] = tensor.data
    missing = [name for name in expected if name not in arrays]
    if missing:
        raise bad_request(f"missing input '{missing[0]}' for model '{model.name}'")
    known = {spec.name for spec in model.outputs}
    for output in request.outputs or []:
        if output.name not in known:
            raise bad_request(
                f"unknown output '{output.name}' of model '{model.name}': expected some of "
                + ", ".join(spec.name for spec in model.outputs)
            )
    return arrays


def build_outputs(
    request: InferRequest, model: ModelMetadata, arrays: Mapping[str, np.ndarray]
) -> list[OutputTensor]:
    """The backend's ``arrays`` as answer tensors, in ``model.outputs`` order (or the order the
    client asked in), each with the binary choice of its request.

    Raises:
        OipError: 500 when the backend's array breaks the model's own metadata (a bug).
    """
    specs = {spec.name: spec for spec in model.outputs}
    for spec in model.outputs:
        array = arrays.get(spec.name)
        if array is None or array.dtype != NUMPY_DTYPES[spec.datatype]:
            raise OipError(500, f"model '{model.name}' produced no valid output '{spec.name}'")
        if not _shape_fits(array.shape, spec.shape):
            raise OipError(500, f"model '{model.name}' output '{spec.name}' has a wrong shape")
    wanted = request.outputs or [RequestedOutput(spec.name) for spec in model.outputs]
    return [
        OutputTensor(
            name=out.name,
            datatype=specs[out.name].datatype,
            data=arrays[out.name],
            binary=request.binary_outputs if out.binary is None else out.binary,
        )
        for out in wanted
    ]
