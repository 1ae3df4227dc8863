"""The v2 HTTP routes through the real ``tritonclient.http``, over the fake engine."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
from triton_calls import expect_error, http_image, http_tensor, labels_text

DETECT_OUTPUTS = ("BOXES", "SCORES", "CLASS_IDS", "LABELS")


@pytest.fixture
def client(http_url: str) -> Any:
    with httpclient.InferenceServerClient(http_url) as triton:
        yield triton


def test_health_and_readiness(client: Any, oip: Any) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(oip.model)
    assert client.is_model_ready(oip.classify_model)
    assert client.is_model_ready(oip.model, model_version=oip.version)
    assert not client.is_model_ready("no-such-model")
    assert not client.is_model_ready(oip.model, model_version="8")


def test_server_metadata(client: Any) -> None:
    assert client.get_server_metadata() == {
        "name": "spp-service",
        "version": "9.9",
        "extensions": ["binary_tensor_data"],
    }


def test_model_metadata(client: Any, oip: Any) -> None:
    image = {"name": "IMAGE", "datatype": "BYTES", "shape": [1]}
    assert client.get_model_metadata(oip.model) == {
        "name": oip.model,
        "versions": [oip.version],
        "platform": "pytorch",
        "inputs": [image],
        "outputs": [
            {"name": "BOXES", "datatype": "FP32", "shape": [-1, 4]},
            {"name": "SCORES", "datatype": "FP32", "shape": [-1]},
            {"name": "CLASS_IDS", "datatype": "INT64", "shape": [-1]},
            {"name": "LABELS", "datatype": "BYTES", "shape": [-1]},
        ],
    }
    classify = client.get_model_metadata(oip.classify_model, model_version=oip.version)
    assert classify["outputs"] == [
        {"name": "PROBABILITIES", "datatype": "FP32", "shape": [3]},
        {"name": "LABELS", "datatype": "BYTES", "shape": [3]},
    ]
    expect_error("404", "unknown model 'nope'", client.get_model_metadata, "nope")
    expect_error(
        "404", f"unknown version '8' of model '{oip.model}'",
        client.get_model_metadata, oip.model, model_version="8",
    )  # fmt: skip


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_detect(client: Any, oip: Any, engine: Any, png: bytes, binary: bool) -> None:
    outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in DETECT_OUTPUTS]
    result = client.infer(
        oip.model,
        [http_image(png, binary)],
        outputs=outputs,
        parameters={"min_confidence": 0.25, "classes": "triangle, circle", "scales": "multi"},
    )
    np.testing.assert_array_equal(
        result.as_numpy("BOXES"),
        np.array([[1.5, 2.25, 30.0, 40.5], [0.0, 0.0, 10.0, 12.0]], dtype=np.float32),
    )
    np.testing.assert_array_equal(result.as_numpy("SCORES"), np.float32([0.875, 0.3]))
    assert result.as_numpy("SCORES").dtype == np.float32
    np.testing.assert_array_equal(result.as_numpy("CLASS_IDS"), np.int64([1, 0]))
    assert result.as_numpy("CLASS_IDS").dtype == np.int64
    assert labels_text(result.as_numpy("LABELS")) == ["square", "circle"]
    response = result.get_response()
    assert (response["model_name"], response["model_version"]) == (oip.model, oip.version)
    ((kind, image, params, class_ids),) = engine.calls
    assert (kind, image, class_ids) == ("detect", png, (0, 2))
    assert (params.min_confidence, params.scales, params.classes) == (
        0.25,
        "multi",
        "triangle, circle",
    )
    assert (params.nms_iou, params.max_detections, params.max_proposals) == (None, None, None)


def test_detect_defaults_to_binary_outputs_and_versioned_route(
    client: Any, oip: Any, png: bytes
) -> None:
    result = client.infer(
        oip.model, [http_image(png, True)], model_version=oip.version, request_id="r-1"
    )
    response = result.get_response()
    assert response["id"] == "r-1"
    assert [o["name"] for o in response["outputs"]] == list(DETECT_OUTPUTS)
    assert all("binary_data_size" in o["parameters"] for o in response["outputs"])
    assert result.as_numpy("BOXES").shape == (2, 4)


def test_outputs_subset_in_requested_order(client: Any, oip: Any, png: bytes) -> None:
    outputs = [
        httpclient.InferRequestedOutput("LABELS", binary_data=False),
        httpclient.InferRequestedOutput("SCORES", binary_data=True),
    ]
    result = client.infer(oip.model, [http_image(png, True)], outputs=outputs)
    assert [o["name"] for o in result.get_response()["outputs"]] == ["LABELS", "SCORES"]
    assert result.as_numpy("LABELS").tolist() == ["square", "circle"]
    assert result.as_numpy("BOXES") is None


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_classify(client: Any, oip: Any, engine: Any, png: bytes, binary: bool) -> None:
    outputs = [
        httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("PROBABILITIES", "LABELS")
    ]
    result = client.infer(oip.classify_model, [http_image(png, binary)], outputs=outputs)
    np.testing.assert_array_equal(
        result.as_numpy("PROBABILITIES"), np.float32([0.625, 0.25, 0.125])
    )
    assert labels_text(result.as_numpy("LABELS")) == ["circle", "square", "triangle"]
    assert engine.calls == [("classify", png, None, None)]


def test_gzip_request(client: Any, oip: Any, png: bytes) -> None:
    result = client.infer(oip.model, [http_image(png, True)], request_compression_algorithm="gzip")
    np.testing.assert_array_equal(result.as_numpy("CLASS_IDS"), np.int64([1, 0]))


BAD_REQUESTS = {
    "wrong_datatype": (
        lambda png: [http_tensor("IMAGE", [1], "FP32", np.float32([1.0]))],
        {},
        "input 'IMAGE' expects datatype BYTES, got FP32",
    ),
    "wrong_shape": (
        lambda png: [http_tensor("IMAGE", [2], "BYTES", np.array([png, png], dtype=object))],
        {},
        "input 'IMAGE' expects shape [1], got [2]",
    ),
    "missing_input": (lambda png: [], {}, "missing input 'IMAGE' for model 'shapes'"),
    "unexpected_input": (
        lambda png: [http_tensor("PICTURE", [1], "BYTES", np.array([png], dtype=object))],
        {},
        "unexpected input 'PICTURE' for model 'shapes': expected IMAGE",
    ),
    "bad_parameter": (
        lambda png: [http_tensor("IMAGE", [1], "BYTES", np.array([png], dtype=object))],
        {"min_confidence": 2.0},
        "invalid parameter 'min_confidence': Input should be less than or equal to 1",
    ),
    "unknown_parameter": (
        lambda png: [http_tensor("IMAGE", [1], "BYTES", np.array([png], dtype=object))],
        {"format": "png"},
        "unknown parameter 'format': expected some of scales, max_proposals, min_confidence, "
        "nms_iou, max_detections, classes",
    ),
    "unknown_class": (
        lambda png: [http_tensor("IMAGE", [1], "BYTES", np.array([png], dtype=object))],
        {"classes": "square,hexagon"},
        "unknown class name(s): hexagon; expected some of: circle, square, triangle",
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_requests_are_400_and_server_stays_ready(
    client: Any, oip: Any, engine: Any, png: bytes, case: str
) -> None:
    make_inputs, parameters, message = BAD_REQUESTS[case]
    expect_error("400", message, client.infer, oip.model, make_inputs(png), parameters=parameters)
    assert engine.calls == []
    assert client.is_server_ready() and client.is_model_ready(oip.model)


def test_not_an_image_gets_the_translated_error(client: Any, oip: Any) -> None:
    inputs = [http_tensor("IMAGE", [1], "BYTES", np.array([b"plain text"], dtype=object))]
    expect_error("415", "unsupported image format", client.infer, oip.model, inputs)
    assert client.is_server_ready()


def test_classify_takes_no_parameters(client: Any, oip: Any, png: bytes) -> None:
    expect_error(
        "400", "model 'shapes-classify' takes no parameters, got 'scales'",
        client.infer, oip.classify_model, [http_image(png, True)], parameters={"scales": "multi"},
    )  # fmt: skip


def test_not_ready(client: Any, oip: Any, engine: Any, png: bytes) -> None:
    engine.is_ready = False
    assert client.is_server_live()
    assert not client.is_server_ready()
    assert not client.is_model_ready(oip.model)
    expect_error(
        "503", "model 'shapes' is not ready", client.infer, oip.model, [http_image(png, True)]
    )
    assert client.get_model_metadata(oip.model)["versions"] == []
