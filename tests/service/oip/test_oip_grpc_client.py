"""``inference.GRPCInferenceService`` through the real ``tritonclient.grpc``, over the fake
engine (the client's own generated messages and ours live side by side in this process)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from triton_calls import expect_error, grpc_image, grpc_tensor

INVALID = "StatusCode.INVALID_ARGUMENT"


@pytest.fixture
def client(grpc_url: str) -> Any:
    with grpcclient.InferenceServerClient(grpc_url) as triton:
        yield triton


def test_health_and_metadata(client: Any, oip: Any) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(oip.model)
    assert client.is_model_ready(oip.classify_model, model_version=oip.version)
    server = client.get_server_metadata(as_json=True)
    assert server == {"name": "spp-service", "version": "9.9", "extensions": ["binary_tensor_data"]}
    meta = client.get_model_metadata(oip.model, as_json=True)
    assert meta["name"] == oip.model and meta["versions"] == [oip.version]
    assert meta["inputs"] == [{"name": "IMAGE", "datatype": "BYTES", "shape": ["1"]}]
    assert [(o["name"], o["datatype"], o["shape"]) for o in meta["outputs"]] == [
        ("BOXES", "FP32", ["-1", "4"]),
        ("SCORES", "FP32", ["-1"]),
        ("CLASS_IDS", "INT64", ["-1"]),
        ("LABELS", "BYTES", ["-1"]),
    ]  # int64 fields are strings in protobuf's JSON
    expect_error("StatusCode.NOT_FOUND", "unknown model 'nope'", client.is_model_ready, "nope")
    expect_error("StatusCode.NOT_FOUND", "unknown model 'nope'", client.get_model_metadata, "nope")


def test_detect(client: Any, oip: Any, engine: Any, png: bytes) -> None:
    result = client.infer(
        oip.model,
        grpc_image(png),
        parameters={"min_confidence": 0.25, "max_detections": 7, "classes": "square"},
        request_id="g-1",
    )
    np.testing.assert_array_equal(
        result.as_numpy("BOXES"),
        np.array([[1.5, 2.25, 30.0, 40.5], [0.0, 0.0, 10.0, 12.0]], dtype=np.float32),
    )
    np.testing.assert_array_equal(result.as_numpy("SCORES"), np.float32([0.875, 0.3]))
    np.testing.assert_array_equal(result.as_numpy("CLASS_IDS"), np.int64([1, 0]))
    assert result.as_numpy("LABELS").tolist() == [b"square", b"circle"]
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == (oip.model, "7", "g-1")
    ((kind, image, params, class_ids),) = engine.calls
    assert (kind, image, class_ids) == ("detect", png, (1,))
    assert (params.min_confidence, params.max_detections) == (0.25, 7)


def test_classify_with_requested_outputs(client: Any, oip: Any, png: bytes) -> None:
    outputs = [grpcclient.InferRequestedOutput("LABELS")]
    result = client.infer(oip.classify_model, grpc_image(png), outputs=outputs)
    assert result.as_numpy("LABELS").tolist() == [b"circle", b"square", b"triangle"]
    assert result.as_numpy("PROBABILITIES") is None
    full = client.infer(oip.classify_model, grpc_image(png))
    np.testing.assert_array_equal(full.as_numpy("PROBABILITIES"), np.float32([0.625, 0.25, 0.125]))


@pytest.mark.parametrize(
    ("inputs", "parameters", "message"),
    [
        (
            lambda png: [grpc_tensor("IMAGE", [1], "INT64", np.int64([3]))],
            {},
            "input 'IMAGE' expects datatype BYTES, got INT64",
        ),
        (
            lambda png: [grpc_tensor("IMAGE", [1, 1], "BYTES", np.array([[png]], dtype=object))],
            {},
            "input 'IMAGE' expects shape [1], got [1, 1]",
        ),
        (lambda png: [], {}, "missing input 'IMAGE' for model 'shapes'"),
        (
            lambda png: grpc_image(png),
            {"nms_iou": 0.0},
            "invalid parameter 'nms_iou': Input should be greater than 0",
        ),
        (
            lambda png: grpc_image(png),
            {"scales": "all"},
            "invalid parameter 'scales': Input should be 'single' or 'multi'",
        ),
    ],
    ids=["wrong_datatype", "wrong_shape", "missing_input", "bad_nms_iou", "bad_scales"],
)
def test_bad_requests(
    client: Any, oip: Any, engine: Any, png: bytes, inputs: Any, parameters: Any, message: str
) -> None:
    expect_error(INVALID, message, client.infer, oip.model, inputs(png), parameters=parameters)
    assert engine.calls == [] and client.is_server_ready()


def test_not_an_image_and_not_ready(client: Any, oip: Any, engine: Any, png: bytes) -> None:
    not_png = [grpc_tensor("IMAGE", [1], "BYTES", np.array([b"GIF89a..."], dtype=object))]
    expect_error(INVALID, "unsupported image format", client.infer, oip.model, not_png)
    engine.is_ready = False
    assert client.is_server_live() and not client.is_server_ready()
    assert not client.is_model_ready(oip.model)
    expect_error(
        "StatusCode.UNAVAILABLE", "model 'shapes' is not ready",
        client.infer, oip.model, grpc_image(png),
    )  # fmt: skip


def test_api_key(oip: Any, png: bytes) -> None:
    engine = oip.FakeEngine()
    with (
        oip.serve_grpc(engine, api_key=oip.api_key) as url,
        grpcclient.InferenceServerClient(url) as client,
    ):
        assert client.is_server_ready() and client.is_model_ready(oip.model)
        unauthenticated = "StatusCode.UNAUTHENTICATED"
        expect_error(unauthenticated, "missing API key", client.get_model_metadata, oip.model)
        expect_error(
            unauthenticated, "invalid API key",
            client.infer, oip.model, grpc_image(png), headers={"x-api-key": "guess"},
        )  # fmt: skip
        bearer = {"authorization": f"Bearer {oip.api_key}"}
        result = client.infer(oip.model, grpc_image(png), headers=bearer)
        assert result.as_numpy("CLASS_IDS").tolist() == [1, 0]
