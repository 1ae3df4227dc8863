"""Every route and every option of the HTTP API, on the tiny random model."""

from __future__ import annotations

import io
import json
import math
from typing import Any

import pytest
from PIL import Image

TINY_CLASSES = ["circle", "square", "triangle"]


@pytest.fixture
def png(images: Any) -> bytes:
    return images.encode(images.scene(96, 72, seed=3), "PNG")


def post_image(client: Any, path: str, data: bytes, params: Any = None, **kwargs: Any) -> Any:
    return client.post(path, files={"image": ("x.png", data, "image/png")}, params=params, **kwargs)


def check_detect_body(body: dict[str, Any], width: int, height: int) -> None:
    assert set(body) == {
        "model",
        "width",
        "height",
        "detections",
        "num_proposals",
        "proposals_source",
        "scales",
        "batch_size",
        "timings_ms",
    }
    assert body["model"] == {"name": "tiny-random", "version": "0"}
    assert (body["width"], body["height"]) == (width, height)
    assert body["num_proposals"] >= 1 and body["batch_size"] >= 1
    assert body["proposals_source"] in ("selective_search", "cache", "client")
    for stage in (
        "read",
        "decode",
        "proposals",
        "queue",
        "conv5",
        "fc",
        "svm",
        "nms",
        "inference",
        "total",
    ):
        assert body["timings_ms"][stage] >= 0.0, stage
    confidences = [d["confidence"] for d in body["detections"]]
    assert confidences == sorted(confidences, reverse=True)
    for detection in body["detections"]:
        assert set(detection) == {"label", "class_id", "confidence", "score", "box"}
        assert detection["label"] == TINY_CLASSES[detection["class_id"]]
        assert 0.0 <= detection["confidence"] <= 1.0 and math.isfinite(detection["score"])
        box = detection["box"]
        assert 0 <= box["x1"] <= box["x2"] <= width - 1
        assert 0 <= box["y1"] <= box["y2"] <= height - 1


# ----------------------------------------------------------------------------- operations


def test_healthz_readyz_and_models(client: Any) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "reason": None,
        "model": {"name": "tiny-random", "version": "0"},
        "device": "cpu",
    }
    [model] = client.get("/v1/models").json()["models"]
    assert model["name"] == "tiny-random" and model["classes"] == TINY_CLASSES
    assert model["device"] == "cpu" and model["load_time_s"] >= 0
    assert model["manifest"]["detection"]["single_scale"] == 96
    assert "training" not in model["manifest"]


def test_metrics_report_requests_stages_and_model(client: Any, png: bytes) -> None:
    assert post_image(client, "/detect", png).status_code == 200
    text = client.get("/metrics").text
    for needle in (
        'spp_requests_total{method="POST",model="tiny-random",protocol="http",route="/detect",'
        'status="200"} 1.0',
        'spp_request_duration_seconds_count{model="tiny-random",protocol="http",route="/detect"} '
        "1.0",
        'spp_stage_duration_seconds_count{stage="proposals"} 1.0',
        'spp_stage_duration_seconds_count{stage="conv5"} 1.0',
        "spp_queue_depth 0.0",
        "spp_in_flight_requests 1.0",  # the /metrics request itself
        "spp_batch_size_count",
        "spp_model_load_seconds",
        "spp_model_ready 1.0",
        'spp_model_info{device="cpu",name="tiny-random",version="0"} 1.0',
    ):
        assert needle in text, needle


def test_docs_openapi_and_page(client: Any) -> None:
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/detect"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "image/png", "image/jpeg"} <= set(body)
    params = {p["name"] for p in schema["paths"]["/detect"]["post"]["parameters"]}
    assert params == {
        "scales",
        "max_proposals",
        "min_confidence",
        "nms_iou",
        "max_detections",
        "classes",
        "format",
        "model",
    }
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")


def test_request_id_is_echoed_or_generated(client: Any) -> None:
    assert (
        client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"]
        == "abc-123"
    )
    generated = client.get("/healthz", headers={"X-Request-ID": "bad id\nwith newline"})
    assert generated.headers["x-request-id"] not in ("", "bad id\nwith newline")
    assert len(client.get("/healthz").headers["x-request-id"]) == 32


def test_unknown_route_is_404(client: Any) -> None:
    assert client.get("/nope").status_code == 404


# ----------------------------------------------------------------------------- /detect


def test_detect_multipart(client: Any, png: bytes) -> None:
    response = post_image(client, "/detect", png)
    assert response.status_code == 200, response.text
    body = response.json()
    check_detect_body(body, 96, 72)
    assert body["scales"] == [96]
    assert body["detections"], "the tiny model scores every window"
    assert response.headers["x-num-detections"] == str(len(body["detections"]))
    assert "proposals;dur=" in response.headers["server-timing"]


def test_detect_raw_body(client: Any, png: bytes) -> None:
    response = client.post("/detect", content=png, headers={"Content-Type": "image/png"})
    assert response.status_code == 200, response.text
    check_detect_body(response.json(), 96, 72)
    octet = client.post(
        "/detect", content=png, headers={"Content-Type": "application/octet-stream"}
    )
    assert octet.status_code == 200


def test_detect_multi_scale(client: Any, png: bytes) -> None:
    body = post_image(client, "/detect", png, params={"scales": "multi"}).json()
    assert body["scales"] and set(body["scales"]) <= {64, 96, 128}


def test_detect_max_proposals(client: Any, png: bytes) -> None:
    body = post_image(client, "/detect", png, params={"max_proposals": 3}).json()
    assert 1 <= body["num_proposals"] <= 3


def test_detect_min_confidence_and_max_detections(client: Any, png: bytes) -> None:
    everything = post_image(client, "/detect", png, params={"min_confidence": 0}).json()
    everything = everything["detections"]
    median = sorted(d["confidence"] for d in everything)[len(everything) // 2]
    kept = post_image(client, "/detect", png, params={"min_confidence": median}).json()
    assert kept["detections"] and all(d["confidence"] >= median for d in kept["detections"])
    assert len(kept["detections"]) < len(everything) or median == 0.0
    capped = post_image(client, "/detect", png, params={"max_detections": 2, "min_confidence": 0})
    assert capped.json()["detections"] == everything[:2]


def test_detect_default_min_confidence_is_one_half(client: Any, png: bytes) -> None:
    """The documented default: a bare request returns no detection below 0.5, and
    ``min_confidence=0`` returns those too. The tiny random model's Platt confidences straddle
    0.5 (its SVM scores are near 0), so both sides are exercised."""
    everything = post_image(client, "/detect", png, params={"min_confidence": 0}).json()
    low = [d for d in everything["detections"] if d["confidence"] < 0.5]
    assert low, "the fixture must produce detections below 0.5 for this test to mean anything"
    bare = post_image(client, "/detect", png).json()["detections"]
    assert all(d["confidence"] >= 0.5 for d in bare)
    # The same detections as the high ones of the first answer (two runs of the network may
    # differ in the last float bits, hence the rounding).
    high = [d for d in everything["detections"] if d["confidence"] >= 0.5]
    assert _rounded(bare) == _rounded(high) and bare


def _rounded(detections: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted(
        (d["label"], round(d["confidence"], 4), *(round(v, 2) for v in d["box"].values()))
        for d in detections
    )


def test_detect_nms_iou(client: Any, png: bytes) -> None:
    strict = post_image(client, "/detect", png, params={"nms_iou": 0.05}).json()["detections"]
    loose = post_image(client, "/detect", png, params={"nms_iou": 1.0}).json()["detections"]
    assert len(strict) < len(loose)


def test_detect_classes_filter(client: Any, png: bytes) -> None:
    body = post_image(client, "/detect", png, params={"classes": "square, triangle"}).json()
    assert body["detections"]
    assert {d["label"] for d in body["detections"]} <= {"square", "triangle"}


def test_detect_options_as_form_fields(client: Any, png: bytes) -> None:
    response = client.post(
        "/detect",
        files={"image": ("x.png", png, "image/png")},
        data={"classes": "circle", "max_detections": "1", "scales": "multi"},
    )
    assert response.status_code == 200, response.text
    [detection] = response.json()["detections"]
    assert detection["label"] == "circle"
    # a query parameter wins over the form field of the same name
    both = client.post(
        "/detect",
        params={"classes": "square"},
        files={"image": ("x.png", png, "image/png")},
        data={"classes": "circle"},
    )
    assert {d["label"] for d in both.json()["detections"]} == {"square"}


@pytest.mark.parametrize(
    ("how", "media", "pil_format"),
    [
        ({"params": {"format": "png"}}, "image/png", "PNG"),
        ({"params": {"format": "jpeg"}}, "image/jpeg", "JPEG"),
        ({"headers": {"Accept": "image/png"}}, "image/png", "PNG"),
        ({"headers": {"Accept": "text/html, image/jpeg;q=0.9, */*;q=0.1"}}, "image/jpeg", "JPEG"),
    ],
)
def test_detect_image_response(
    client: Any, png: bytes, how: dict[str, Any], media: str, pil_format: str
) -> None:
    response = post_image(client, "/detect", png, **how)
    assert response.status_code == 200
    assert response.headers["content-type"] == media
    drawn = Image.open(io.BytesIO(response.content))
    assert drawn.format == pil_format and drawn.size == (96, 72)
    assert int(response.headers["x-num-detections"]) >= 1


def test_format_json_overrides_accept(client: Any, png: bytes) -> None:
    response = post_image(
        client, "/detect", png, params={"format": "json"}, headers={"Accept": "image/png"}
    )
    assert response.headers["content-type"] == "application/json"


# ----------------------------------------------------------------------------- /classify


def test_classify(client: Any, png: bytes) -> None:
    response = post_image(client, "/classify", png)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == {"name": "tiny-random", "version": "0"}
    assert (body["width"], body["height"]) == (96, 72)
    predictions = body["predictions"]
    assert [p["label"] for p in predictions] == [TINY_CLASSES[p["class_id"]] for p in predictions]
    assert len(predictions) == 3  # top_k 5 capped at the number of classes
    probabilities = [p["probability"] for p in predictions]
    assert probabilities == sorted(probabilities, reverse=True)
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-4)
    assert {"decode", "queue", "inference", "total"} <= set(body["timings_ms"])


def test_classify_top_k_query_and_form(client: Any, png: bytes) -> None:
    assert len(post_image(client, "/classify", png, params={"top_k": 1}).json()["predictions"]) == 1
    form = client.post(
        "/classify", files={"image": ("x.png", png, "image/png")}, data={"top_k": "2"}
    )
    assert len(form.json()["predictions"]) == 2


def test_classify_multi_view_answers_what_the_detector_does(client: Any, png: bytes) -> None:
    """``views=multi`` reaches ``Detector.classify(views="multi")``: the same probabilities
    as calling it directly on the decoded image, and unlike the full-image view's."""
    from app.imaging import decode_image

    multi = post_image(client, "/classify", png, params={"views": "multi", "top_k": 3})
    full = post_image(client, "/classify", png, params={"top_k": 3})
    assert multi.status_code == 200, multi.text
    detector = client.app.state.service.engine.detector
    image = decode_image(png, max_pixels=10**8)
    [expected] = detector.classify([image], top_k=3, views="multi")
    got = {p["label"]: p["probability"] for p in multi.json()["predictions"]}
    assert got == pytest.approx({p.label: p.probability for p in expected}, abs=1e-5)
    assert got != pytest.approx({p["label"]: p["probability"] for p in full.json()["predictions"]})


def test_classify_by_detection_answers_what_the_detector_does(client: Any, png: bytes) -> None:
    """``views=detect`` runs selective search, then ``Detector.classify(views="detect")`` on
    its windows: the same probabilities as calling both directly."""
    from app.data.proposals import propose
    from app.imaging import decode_image

    response = post_image(client, "/classify", png, params={"views": "detect", "top_k": 3})
    assert response.status_code == 200, response.text
    detector = client.app.state.service.engine.detector
    image = decode_image(png, max_pixels=10**8)
    windows = propose(image, detector.model.manifest.proposals)
    [expected] = detector.classify([image], top_k=3, views="detect", proposals=[windows])
    got = {p["label"]: p["probability"] for p in response.json()["predictions"]}
    assert got == pytest.approx({p.label: p.probability for p in expected}, abs=1e-5)
    assert "proposals" in response.json()["timings_ms"]


# ----------------------------------------------------------------------------- bad parameters


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/detect", {"scales": "triple"}, "scales"),
        ("/detect", {"min_confidence": "-0.1"}, "min_confidence"),
        ("/detect", {"min_confidence": "1.5"}, "min_confidence"),
        ("/detect", {"min_confidence": "nan"}, "min_confidence"),
        ("/detect", {"nms_iou": "0"}, "nms_iou"),
        ("/detect", {"nms_iou": "inf"}, "nms_iou"),
        ("/detect", {"max_proposals": "100000"}, "max_proposals"),
        ("/detect", {"max_proposals": "0"}, "max_proposals"),
        ("/detect", {"max_detections": "-1"}, "max_detections"),
        ("/detect", {"format": "gif"}, "format"),
        ("/detect", {"colour": "red"}, "colour"),
        ("/classify", {"top_k": "0"}, "top_k"),
        ("/classify", {"top_k": "many"}, "top_k"),
        ("/classify", {"views": "all"}, "views"),
    ],
)
def test_bad_query_parameters_are_422(
    client: Any, png: bytes, path: str, params: dict[str, str], field: str
) -> None:
    response = post_image(client, path, png, params=params)
    assert response.status_code == 422, response.text
    assert [e["loc"] for e in response.json()["detail"]] == [["query", field]]


def test_unknown_class_is_422(client: Any, png: bytes) -> None:
    response = post_image(client, "/detect", png, params={"classes": "circle,dragon"})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["query", "classes"]
    assert error["msg"] == (
        "unknown class name(s): dragon; expected some of: circle, square, triangle"
    )


def test_bad_form_field_is_422(client: Any, png: bytes) -> None:
    response = client.post(
        "/detect", files={"image": ("x.png", png, "image/png")}, data={"nms_iou": "2"}
    )
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [["body", "nms_iou"]]


def test_wrong_content_type_is_415(client: Any, png: bytes) -> None:
    response = client.post(
        "/detect", content=b'{"a": 1}', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 415
    assert response.json()["detail"] == (
        "unsupported content type: expected multipart/form-data with an 'image' field, "
        "or an image/* body"
    )
    assert client.post("/detect", content=png).status_code == 415  # no content type at all


def test_missing_image_field_is_422(client: Any, png: bytes) -> None:
    response = client.post("/detect", files={"picture": ("x.png", png, "image/png")})
    assert response.status_code == 422
    assert response.json() == {
        "detail": [{"type": "missing", "loc": ["body", "image"], "msg": "Field required"}]
    }


def test_two_image_fields_are_400(client: Any, png: bytes) -> None:
    response = client.post(
        "/detect",
        files=[("image", ("a.png", png, "image/png")), ("image", ("b.png", png, "image/png"))],
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "expected one 'image' field, got several"}


def test_malformed_multipart_is_400(client: Any, png: bytes) -> None:
    response = client.post(
        "/detect",
        content=b'--xyz\r\nContent-Disposition: form-data; name="image"\r\n\r\n' + png,
        headers={"Content-Type": "multipart/form-data; boundary=xyz"},
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("malformed multipart body")
    no_boundary = client.post(
        "/detect", content=png, headers={"Content-Type": "multipart/form-data"}
    )
    assert no_boundary.status_code == 400


def test_validation_errors_are_json(client: Any) -> None:
    response = client.post("/detect", params={"scales": "x"}, content=b"")
    assert response.status_code == 422
    json.dumps(response.json())


@pytest.mark.gpu
def test_detect_and_classify_on_cuda(make_app: Any, png: bytes) -> None:
    """The same requests with the detector on the GPU (skipped without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from app.inference.detector import Detector
    from app.model.config import DetectionConfig
    from app.model.store import build_random_model

    detection = DetectionConfig(single_scale=96, multi_scales=(64, 96, 128), min_score=-1e9)
    model = build_random_model(TINY_CLASSES, fc_dim=32, detection=detection)
    with make_app.client(detector=Detector(model, "cuda"), device="cuda") as client:
        assert client.get("/readyz").json()["device"].startswith("cuda")
        for scales in ("single", "multi"):
            response = post_image(client, "/detect", png, params={"scales": scales})
            assert response.status_code == 200, response.text
            check_detect_body(response.json(), 96, 72)
        assert post_image(client, "/classify", png).status_code == 200
