"""gRPC messages: our generated classes are wire-compatible with tritonclient's, and typed
``contents`` are read as well as raw ones."""

from __future__ import annotations

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from app.service.oip.grpc_codec import CONTENTS_FIELDS, request_from_proto, response_to_proto
from app.service.oip.messages import OutputTensor
from app.service.oip.protocol import load_protocol
from app.service.oip.protocol_errors import OipError
from app.service.oip.tensors import NUMPY_DTYPES


def test_every_datatype_has_a_contents_field_but_fp16() -> None:
    assert set(CONTENTS_FIELDS) | {"FP16"} == set(NUMPY_DTYPES)


def test_service_has_the_six_rpcs_and_the_repository_extension() -> None:
    methods = [m.name for m in load_protocol().service.methods]
    assert methods == [
        "ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer",
        "RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload",
    ]  # fmt: skip


def test_triton_request_parsed_by_our_classes() -> None:
    theirs = service_pb2.ModelInferRequest(model_name="m", model_version="2", id="x")
    theirs.parameters["min_confidence"].double_param = 0.25
    theirs.parameters["max_proposals"].int64_param = 9
    theirs.parameters["scales"].string_param = "multi"
    theirs.parameters["flag"].bool_param = True
    theirs.parameters["big"].uint64_param = 2**63
    tensor = theirs.inputs.add(name="IMAGE", datatype="BYTES", shape=[2])
    tensor.contents.bytes_contents.extend([b"\x00a", b"b"])
    theirs.outputs.add(name="BOXES")
    ours = load_protocol().message("ModelInferRequest").FromString(theirs.SerializeToString())
    request = request_from_proto(ours)
    assert request.parameters == {
        "min_confidence": 0.25,
        "max_proposals": 9,
        "scales": "multi",
        "flag": True,
        "big": 2**63,
    }
    assert request.inputs[0].data.tolist() == [b"\x00a", b"b"]
    assert [o.name for o in request.outputs or []] == ["BOXES"]
    assert request.id == "x" and request.binary_outputs


@pytest.mark.parametrize(
    ("datatype", "field", "values", "expected"),
    [
        ("FP32", "fp32_contents", [0.5, -1.0], np.float32([0.5, -1.0])),
        ("INT64", "int64_contents", [-3, 4], np.int64([-3, 4])),
        ("UINT8", "uint_contents", [0, 255], np.uint8([0, 255])),
        ("BOOL", "bool_contents", [True, False], np.bool_([True, False])),
    ],
)
def test_typed_contents(
    datatype: str, field: str, values: list[object], expected: np.ndarray
) -> None:
    message = load_protocol().message("ModelInferRequest")()
    tensor = message.inputs.add(name="A", datatype=datatype, shape=[2])
    getattr(tensor.contents, field).extend(values)
    data = request_from_proto(message).inputs[0].data
    np.testing.assert_array_equal(data, expected)
    assert data.dtype == expected.dtype


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda m: m.raw_input_contents.append(b""),
            "raw_input_contents has 1 entries for 0 inputs",
        ),
        (
            lambda m: m.inputs.add(name="A", datatype="FP16", shape=[1]),
            "input 'A': FP16 data must be sent raw",
        ),
        (
            lambda m: m.inputs.add(
                name="A", datatype="FP32", shape=[3]
            ).contents.fp32_contents.append(1),
            "input 'A': shape [3] needs 3 elements, got 1",
        ),
        (
            lambda m: m.inputs.add(
                name="A", datatype="UINT8", shape=[1]
            ).contents.uint_contents.append(256),
            "input 'A': a value does not fit in UINT8",
        ),
    ],
)
def test_bad_messages_are_400(build: object, message: str) -> None:
    request = load_protocol().message("ModelInferRequest")()
    build(request)  # type: ignore[operator]
    with pytest.raises(OipError) as caught:
        request_from_proto(request)
    assert (caught.value.status_code, caught.value.message) == (400, message)


def test_answer_parsed_by_triton_classes() -> None:
    labels = np.array([b"circle"], dtype=object)
    outputs = [
        OutputTensor("BOXES", "FP32", np.float32([[1, 2, 3, 4]])),
        OutputTensor("LABELS", "BYTES", labels),
    ]
    ours = response_to_proto(load_protocol(), "m", "2", "x", outputs)
    theirs = service_pb2.ModelInferResponse.FromString(ours.SerializeToString())
    assert [(o.name, o.datatype, list(o.shape)) for o in theirs.outputs] == [
        ("BOXES", "FP32", [1, 4]),
        ("LABELS", "BYTES", [1]),
    ]
    assert theirs.raw_output_contents[0] == np.float32([1, 2, 3, 4]).tobytes()
    assert theirs.raw_output_contents[1] == b"\x06\x00\x00\x00circle"
