"""The protocol's JSON bodies as pydantic models, for the OpenAPI document (``/docs``).

The routes build and read these bodies themselves (:mod:`app.service.oip.codec`); the models
only describe them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

Parameters = dict[str, bool | int | float | str]


class ErrorOut(BaseModel):
    """Every error of the v2 routes."""

    error: str


class ServerMetadataOut(BaseModel):
    """``GET /v2``."""

    name: str
    version: str
    extensions: list[str]


class LiveOut(BaseModel):
    """``GET /v2/health/live``."""

    live: bool


class ReadyOut(BaseModel):
    """``GET /v2/health/ready``."""

    ready: bool


class ModelReadyOut(BaseModel):
    """``GET /v2/models/{name}/ready``."""

    name: str
    ready: bool


class TensorMetadataOut(BaseModel):
    """A model input or output; ``-1`` in ``shape`` is a dimension of any size."""

    name: str
    datatype: str
    shape: list[int]


class ModelMetadataOut(BaseModel):
    """``GET /v2/models/{name}``."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadataOut]
    outputs: list[TensorMetadataOut]


class TensorConfigOut(BaseModel):
    """A tensor of Triton's model configuration: ``data_type`` is ``TYPE_FP32``, ... and
    ``TYPE_STRING`` for BYTES."""

    name: str
    data_type: str
    dims: list[int]


class ModelConfigOut(BaseModel):
    """``GET /v2/models/{name}/config`` (Triton's model configuration, the part it knows)."""

    name: str
    platform: str
    max_batch_size: int = Field(description="0: no batch dimension (batching is in-process)")
    input: list[TensorConfigOut]
    output: list[TensorConfigOut]


class InferInputIn(BaseModel):
    """One input tensor: ``data`` (flat or nested, BYTES as base64 or text), or
    ``parameters.binary_data_size`` bytes of the binary part after the JSON."""

    name: str
    datatype: str = Field(description="BOOL, UINT8...UINT64, INT8...INT64, FP16, FP32, FP64, BYTES")
    shape: list[int]
    parameters: Parameters | None = None
    data: list[Any] | None = None


class InferOutputIn(BaseModel):
    """A requested output; ``parameters.binary_data: true`` sends it in the binary part."""

    name: str
    parameters: Parameters | None = None


class InferRequestIn(BaseModel):
    """``POST /v2/models/{name}/infer``: ``parameters`` carries the model's options (for
    detection, ``/detect``'s) and ``binary_data_output``."""

    id: str | None = None
    parameters: Parameters | None = None
    inputs: list[InferInputIn]
    outputs: list[InferOutputIn] | None = None


class InferOutputOut(BaseModel):
    """One output: ``data`` (flat, row-major), or ``parameters.binary_data_size`` bytes of the
    binary part."""

    name: str
    datatype: str
    shape: list[int]
    parameters: Parameters | None = None
    data: list[Any] | None = None


class InferResponseOut(BaseModel):
    """The answer (JSON alone, or the JSON part of a binary answer)."""

    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[InferOutputOut]
