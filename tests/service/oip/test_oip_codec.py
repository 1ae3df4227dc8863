"""HTTP bodies: parsed from what tritonclient encodes and from hand-built bytes; answers read
back by tritonclient's own decoder."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient

from app.service.oip.codec import encode_infer_response, parse_infer_request
from app.service.oip.messages import OutputTensor
from app.service.oip.protocol_errors import OipError


def triton_body(inputs: list[Any], **kwargs: Any) -> tuple[bytes, str | None]:
    body, json_size = httpclient.InferenceServerClient.generate_request_body(inputs, **kwargs)
    return body, None if json_size is None else str(json_size)


def test_parse_what_tritonclient_sends_in_binary() -> None:
    image = httpclient.InferInput("IMAGE", [1], "BYTES")
    image.set_data_from_numpy(np.array([b"\x00\xffimage"], dtype=object))
    weights = httpclient.InferInput("W", [2], "FP32")
    weights.set_data_from_numpy(np.float32([0.5, -1.0]))
    outputs = [httpclient.InferRequestedOutput("BOXES", binary_data=False)]
    body, header = triton_body(
        [image, weights], outputs=outputs, request_id="a", parameters={"min_confidence": 0.5}
    )
    request = parse_infer_request(body, header)
    assert [(t.name, t.datatype, t.shape) for t in request.inputs] == [
        ("IMAGE", "BYTES", (1,)),
        ("W", "FP32", (2,)),
    ]
    assert request.inputs[0].data.tolist() == [b"\x00\xffimage"]
    np.testing.assert_array_equal(request.inputs[1].data, np.float32([0.5, -1.0]))
    assert request.id == "a"
    assert request.model_parameters() == {"min_confidence": 0.5}
    assert [(o.name, o.binary) for o in request.outputs or []] == [("BOXES", False)]


def test_parse_hand_built_binary_body() -> None:
    header = {
        "inputs": [
            {
                "name": "A",
                "datatype": "INT64",
                "shape": [2],
                "parameters": {"binary_data_size": 16},
            },
            {"name": "B", "datatype": "BYTES", "shape": [1], "data": ["eHk="]},
            {"name": "C", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 6}},
        ],
        "parameters": {"binary_data_output": True},
    }
    head = json.dumps(header).encode()
    raw = (
        (7).to_bytes(8, "little") + (-2).to_bytes(8, "little", signed=True) + b"\x02\x00\x00\x00ok"
    )
    request = parse_infer_request(head + raw, str(len(head)))
    assert request.inputs[0].data.tolist() == [7, -2]
    assert request.inputs[1].data.tolist() == [b"xy"]
    assert request.inputs[2].data.tolist() == [b"ok"]
    assert request.binary_outputs is True and request.outputs is None
    assert request.model_parameters() == {}


@pytest.mark.parametrize(
    ("body", "header", "message"),
    [
        (b"{", None, "malformed JSON in the inference request"),
        (b"[]", None, "expected a JSON object as the inference request"),
        (b"{}", None, "expected 'inputs', a list of tensors"),
        (b'{"inputs": []}', "x", "invalid Inference-Header-Content-Length: 'x'"),
        (b'{"inputs": []}', "99", "Inference-Header-Content-Length is 99, the body has 14 bytes"),
        (b'{"inputs": []}abc', "14", "3 bytes of binary data after the inputs' binary_data_size"),
        (
            b'{"inputs": [{"name": "A", "datatype": "BYTES", "shape": [1],'
            b' "parameters": {"binary_data_size": 9}}]}',
            None,
            "input 'A': binary_data_size is 9, 0 bytes are left",
        ),
        (
            b'{"inputs": [{"name": "A", "datatype": "FP32", "shape": [-1], "data": [1]}]}',
            None,
            "input 'A' has invalid shape [-1]: expected [d0, d1, ...]",
        ),
        (
            b'{"inputs": [{"name": "A", "datatype": "FP32", "shape": [1]}]}',
            None,
            "input 'A' has neither 'data' nor binary_data_size",
        ),
        (
            b'{"inputs": [], "outputs": [{"name": "P", "parameters": {"classification": 2}}]}',
            None,
            "the classification extension is not supported",
        ),
        (
            b'{"inputs": [{"name": "A", "datatype": "FP32", "shape": [1], "data": [1],'
            b' "parameters": {"shared_memory_region": "r"}}]}',
            None,
            "shared memory is not supported (shared_memory_region)",
        ),
    ],
)
def test_malformed_requests_are_400(body: bytes, header: str | None, message: str) -> None:
    with pytest.raises(OipError) as caught:
        parse_infer_request(body, header)
    assert (caught.value.status_code, caught.value.message) == (400, message)


def outputs(binary: bool, n: int) -> list[OutputTensor]:
    labels = np.empty(n, dtype=object)
    labels[:] = [b"square", b"circle"][:n]
    return [
        OutputTensor("BOXES", "FP32", np.arange(4 * n, dtype=np.float32).reshape(n, 4), binary),
        OutputTensor("CLASS_IDS", "INT64", np.arange(n, dtype=np.int64), not binary),
        OutputTensor("LABELS", "BYTES", labels, binary),
    ]


@pytest.mark.parametrize("n", [2, 0], ids=["two", "empty"])
@pytest.mark.parametrize("binary", [True, False])
def test_answer_read_back_by_tritonclient(binary: bool, n: int) -> None:
    body, headers = encode_infer_response("m", "3", "req", outputs(binary, n))
    assert headers["Content-Type"] == "application/octet-stream"  # one side is always binary
    result = httpclient.InferenceServerClient.parse_response_body(
        body, header_length=int(headers["Inference-Header-Content-Length"])
    )
    answer = result.get_response()
    assert (answer["model_name"], answer["model_version"], answer["id"]) == ("m", "3", "req")
    np.testing.assert_array_equal(
        result.as_numpy("BOXES"), np.arange(4 * n, dtype=np.float32).reshape(n, 4)
    )
    assert result.as_numpy("CLASS_IDS").tolist() == list(range(n))
    labels = [x.decode() if isinstance(x, bytes) else x for x in result.as_numpy("LABELS")]
    assert labels == ["square", "circle"][:n]


def test_json_only_answer() -> None:
    labels = np.array([b"square"], dtype=object)
    body, headers = encode_infer_response(
        "m",
        "3",
        "",
        [
            OutputTensor("LABELS", "BYTES", labels),
            OutputTensor("SCORES", "FP32", np.float32([0.5])),
        ],
    )
    assert headers == {"Content-Type": "application/json"}
    assert json.loads(body) == {
        "model_name": "m",
        "model_version": "3",
        "outputs": [
            {"name": "LABELS", "datatype": "BYTES", "shape": [1], "data": ["square"]},
            {"name": "SCORES", "datatype": "FP32", "shape": [1], "data": [0.5]},
        ],
    }


def test_deeply_nested_json_is_400_not_a_crash() -> None:
    deep = b'{"inputs": [{"name": "A", "datatype": "INT8", "shape": [1], "data": '
    body = deep + b"[" * 100_000 + b"1" + b"]" * 100_000 + b"}]}"
    with pytest.raises(OipError) as caught:
        parse_infer_request(body)
    assert caught.value.status_code == 400
    nested = b'{"inputs": [{"name": "A", "datatype": "INT8", "shape": [1], "data": [[[[[7]]]]]}]}'
    assert parse_infer_request(nested).inputs[0].data.tolist() == [7]
