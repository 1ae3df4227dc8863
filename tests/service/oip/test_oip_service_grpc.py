"""The real service's gRPC server (started by the app's lifespan on ``GRPC_PORT``) through the
real ``tritonclient.grpc``, compared output by output with ``/detect`` and ``/classify``."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from PIL import Image
from triton_calls import expect_error, grpc_image, grpc_tensor

INVALID = "StatusCode.INVALID_ARGUMENT"


@pytest.fixture
def client(live_service: Any) -> Any:
    with grpcclient.InferenceServerClient(live_service.grpc) as triton:
        yield triton


def test_health_and_metadata(client: Any, live_service: Any) -> None:
    assert client.is_server_live() and client.is_server_ready()
    for model in (live_service.model, live_service.classify_model):
        assert client.is_model_ready(model)
        assert client.is_model_ready(model, model_version=live_service.version)
    meta = client.get_model_metadata(live_service.classify_model)
    assert (meta.name, list(meta.versions)) == (live_service.classify_model, [live_service.version])
    assert [(o.name, o.datatype, list(o.shape)) for o in meta.outputs] == [
        ("PROBABILITIES", "FP32", [len(live_service.classes)]),
        ("LABELS", "BYTES", [len(live_service.classes)]),
    ]
    assert client.get_server_metadata().name == "spp-service"


@pytest.mark.parametrize("options", ["defaults", "keep_all", "several"])
@pytest.mark.parametrize("picture", ["scene_png", "photo_jpeg"])
def test_detect_equals_the_detect_route(
    client: Any, live_service: Any, pictures: dict[str, bytes], picture: str, options: str
) -> None:
    data, params = pictures[picture], live_service.options[options]
    expected = live_service.detect_route(data, params)
    if options == "keep_all":
        assert len(expected["SCORES"]) > 0, "the comparison must not be vacuous"
    result = client.infer(live_service.model, grpc_image(data), parameters=params)
    for name in ("BOXES", "SCORES", "CLASS_IDS"):
        got = result.as_numpy(name)
        assert got.dtype == expected[name].dtype, name
        np.testing.assert_array_equal(got, expected[name], err_msg=name)
    labels = [label.decode() for label in result.as_numpy("LABELS").tolist()]
    assert labels == list(expected["LABELS"])


@pytest.mark.parametrize("picture", ["scene_png", "photo_jpeg"])
def test_classify_equals_the_classify_route(
    client: Any, live_service: Any, pictures: dict[str, bytes], picture: str
) -> None:
    data = pictures[picture]
    result = client.infer(live_service.classify_model, grpc_image(data))
    labels = [label.decode() for label in result.as_numpy("LABELS").tolist()]
    assert labels == list(live_service.classes)
    np.testing.assert_array_equal(
        result.as_numpy("PROBABILITIES"), live_service.classify_route(data)
    )


def _small_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (9, 9, 9)).save(out, format="PNG")
    return out.getvalue()


#: What the real service answers to bad calls: (inputs, parameters, gRPC status, details).
BAD_CALLS: dict[str, tuple[Any, dict[str, Any], str, str]] = {
    "wrong_datatype": (
        lambda png: [grpc_tensor("IMAGE", [1], "FP32", np.float32([1.0]))], {},
        INVALID, "input 'IMAGE' expects datatype BYTES, got FP32",
    ),
    "wrong_shape": (
        lambda png: [grpc_tensor("IMAGE", [1, 1], "BYTES", np.array([[png]], dtype=object))], {},
        INVALID, "input 'IMAGE' expects shape [1], got [1, 1]",
    ),
    "missing_input": (lambda png: [], {}, INVALID, "missing input 'IMAGE' for model 'tiny'"),
    "not_an_image": (
        lambda png: grpc_image(b"plain text, no image\n" * 4), {},
        INVALID, "unsupported image format: expected JPEG, PNG, GIF, WebP, TIFF or BMP",
    ),
    "truncated_image": (
        lambda png: grpc_image(png[: len(png) // 2]), {},
        INVALID, "corrupt or truncated image data",
    ),
    "image_too_small": (
        lambda png: grpc_image(_small_png()), {},
        INVALID, "image too small: 8x8 pixels, each side must be at least 16",
    ),
    "bad_parameter": (
        lambda png: grpc_image(png), {"nms_iou": 0.0},
        INVALID, "invalid parameter 'nms_iou': Input should be greater than 0",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_calls_and_the_service_stays_ready(
    client: Any, live_service: Any, pictures: dict[str, bytes], case: str
) -> None:
    make_inputs, parameters, status, message = BAD_CALLS[case]
    png = pictures["scene_png"]
    expect_error(
        status, message, client.infer, live_service.model, make_inputs(png), parameters=parameters
    )
    assert client.is_server_ready() and client.is_model_ready(live_service.model)
    result = client.infer(live_service.model, grpc_image(png), parameters={"min_confidence": 0.0})
    assert result.as_numpy("BOXES").shape[1:] == (4,)


def test_unknown_model(client: Any) -> None:
    expect_error(
        "StatusCode.NOT_FOUND", "unknown model 'nope'", client.infer, "nope", grpc_image(b"x")
    )
