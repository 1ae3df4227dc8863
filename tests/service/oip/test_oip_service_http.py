"""The real service's v2 HTTP routes through the real ``tritonclient.http``, compared output by
output with ``/detect`` and ``/classify`` on the same images (tiny random model, CPU)."""

from __future__ import annotations

import io
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient
from PIL import Image
from triton_calls import expect_error, http_image, http_tensor, labels_text

DETECT_OUTPUTS = ("BOXES", "SCORES", "CLASS_IDS", "LABELS")


@pytest.fixture
def client(live_service: Any) -> Any:
    with httpclient.InferenceServerClient(live_service.http) as triton:
        yield triton


def test_health_and_metadata(client: Any, live_service: Any) -> None:
    assert client.is_server_live() and client.is_server_ready()
    for model in (live_service.model, live_service.classify_model):
        assert client.is_model_ready(model)
        assert client.is_model_ready(model, model_version=live_service.version)
    assert not client.is_model_ready("no-such-model")
    assert client.get_server_metadata()["name"] == "spp-service"
    detect = client.get_model_metadata(live_service.model)
    assert (detect["name"], detect["versions"]) == (live_service.model, [live_service.version])
    assert detect["inputs"] == [{"name": "IMAGE", "datatype": "BYTES", "shape": [1]}]
    assert [o["name"] for o in detect["outputs"]] == list(DETECT_OUTPUTS)
    config = client.get_model_config(live_service.model)
    assert (config["name"], config["max_batch_size"]) == (live_service.model, 0)
    assert config["input"] == [{"name": "IMAGE", "data_type": "TYPE_STRING", "dims": [1]}]
    classify = client.get_model_metadata(live_service.classify_model)
    k = len(live_service.classes)
    assert classify["outputs"] == [
        {"name": "PROBABILITIES", "datatype": "FP32", "shape": [k]},
        {"name": "LABELS", "datatype": "BYTES", "shape": [k]},
    ]


@pytest.mark.parametrize("options", ["defaults", "keep_all", "several"])
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("picture", ["scene_png", "photo_jpeg"])
def test_detect_equals_the_detect_route(
    client: Any, live_service: Any, pictures: dict[str, bytes], picture: str, binary: bool,
    options: str,
) -> None:  # fmt: skip
    data, params = pictures[picture], live_service.options[options]
    expected = live_service.detect_route(data, params)
    if options == "keep_all":
        assert len(expected["SCORES"]) > 0, "the comparison must not be vacuous"
    outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in DETECT_OUTPUTS]
    result = client.infer(
        live_service.model, [http_image(data, binary)], outputs=outputs, parameters=params
    )
    for name in ("BOXES", "SCORES", "CLASS_IDS"):
        got = result.as_numpy(name)
        assert got.dtype == expected[name].dtype, name
        np.testing.assert_array_equal(got, expected[name], err_msg=name)
    assert labels_text(result.as_numpy("LABELS")) == list(expected["LABELS"])


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("picture", ["scene_png", "photo_jpeg"])
def test_classify_equals_the_classify_route(
    client: Any, live_service: Any, pictures: dict[str, bytes], picture: str, binary: bool
) -> None:
    data = pictures[picture]
    expected = live_service.classify_route(data)
    names = ("PROBABILITIES", "LABELS")
    outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in names]
    result = client.infer(live_service.classify_model, [http_image(data, binary)], outputs=outputs)
    assert labels_text(result.as_numpy("LABELS")) == list(live_service.classes)
    np.testing.assert_array_equal(result.as_numpy("PROBABILITIES"), expected)


#: What the real service answers to bad requests: (inputs, parameters, status, message).
BAD_REQUESTS: dict[str, tuple[Any, dict[str, Any], str, str]] = {
    "wrong_datatype": (
        lambda png: [http_tensor("IMAGE", [1], "FP32", np.float32([1.0]))], {},
        "400", "input 'IMAGE' expects datatype BYTES, got FP32",
    ),
    "wrong_shape": (
        lambda png: [http_tensor("IMAGE", [2], "BYTES", np.array([png, png], dtype=object))], {},
        "400", "input 'IMAGE' expects shape [1], got [2]",
    ),
    "missing_input": (lambda png: [], {}, "400", "missing input 'IMAGE' for model 'tiny'"),
    "not_an_image": (
        lambda png: [http_image(b"plain text, no image\n" * 4)], {},
        "415", "unsupported image format: expected JPEG, PNG, GIF, WebP, TIFF or BMP",
    ),
    "truncated_image": (
        lambda png: [http_image(png[: len(png) // 2])], {},
        "400", "corrupt or truncated image data",
    ),
    "image_too_small": (
        lambda png: [http_image(_tiny_png())], {},
        "422", "image too small: 8x8 pixels, each side must be at least 16",
    ),
    "bad_parameter": (
        lambda png: [http_image(png)], {"min_confidence": 2.0},
        "400", "invalid parameter 'min_confidence': Input should be less than or equal to 1",
    ),
    "unknown_class": (
        lambda png: [http_image(png)], {"classes": "hexagon"},
        "400", "unknown class name(s): hexagon; expected some of: circle, square, triangle",
    ),
}  # fmt: skip


def _tiny_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (9, 9, 9)).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_requests_and_the_service_stays_ready(
    client: Any, live_service: Any, pictures: dict[str, bytes], case: str
) -> None:
    make_inputs, parameters, status, message = BAD_REQUESTS[case]
    png = pictures["scene_png"]
    expect_error(
        status, message, client.infer, live_service.model, make_inputs(png), parameters=parameters
    )
    assert client.is_server_ready() and client.is_model_ready(live_service.model)
    result = client.infer(live_service.model, [http_image(png)], parameters={"min_confidence": 0.0})
    assert result.as_numpy("BOXES").shape[1:] == (4,)


def metric(text: str, name: str, **labels: str) -> float:
    """The value of sample ``name`` with ``labels`` in a Prometheus text page (0 if absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def test_v2_requests_count_in_the_metrics(client: Any, live_service: Any, pictures: Any) -> None:
    route = {"route": "/v2/models/{name}/infer", "method": "POST", "status": "200"}
    stage = {"stage": "proposals"}
    before = httpx.get(f"http://{live_service.http}/metrics").text
    client.infer(live_service.model, [http_image(pictures["scene_png"])])
    after = httpx.get(f"http://{live_service.http}/metrics").text
    assert (
        metric(after, "spp_requests_total", **route)
        == metric(before, "spp_requests_total", **route) + 1
    )
    count = "spp_stage_duration_seconds_count"
    assert metric(after, count, **stage) == metric(before, count, **stage) + 1
