"""The v2 routes with plain HTTP: KServe/MLServer-style JSON bodies, error bodies, API key,
body limit, compression."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient


@pytest.fixture
def client(oip: Any, engine: Any) -> Iterator[TestClient]:
    with TestClient(oip.make_app(engine, max_body_bytes=4096)) as test_client:
        yield test_client


def infer_body(png: bytes, **extra: Any) -> dict[str, Any]:
    image = {"name": "IMAGE", "datatype": "BYTES", "shape": [1]}
    image["data"] = [base64.b64encode(png).decode()]
    return {"inputs": [image], **extra}


def test_kserve_json_request_and_answer(client: TestClient, oip: Any, png: bytes) -> None:
    body = infer_body(png, id="k-1", parameters={"max_detections": 1, "nms_iou": "0.4"})
    response = client.post(f"/v2/models/{oip.model}/infer", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "model_name": oip.model,
        "model_version": oip.version,
        "id": "k-1",
        "outputs": [
            {
                "name": "BOXES",
                "datatype": "FP32",
                "shape": [2, 4],
                "data": [1.5, 2.25, 30.0, 40.5, 0.0, 0.0, 10.0, 12.0],
            },
            {
                "name": "SCORES",
                "datatype": "FP32",
                "shape": [2],
                "data": [0.875, 0.30000001192092896],
            },
            {"name": "CLASS_IDS", "datatype": "INT64", "shape": [2], "data": [1, 0]},
            {"name": "LABELS", "datatype": "BYTES", "shape": [2], "data": ["square", "circle"]},
        ],
    }


def test_parameters_are_validated_like_detect(
    client: TestClient, oip: Any, engine: Any, png: bytes
) -> None:
    ok = client.post(
        f"/v2/models/{oip.model}/infer",
        json=infer_body(png, parameters={"max_proposals": 50, "min_confidence": "0.75"}),
    )
    assert ok.status_code == 200
    params = engine.calls[0][2]
    assert (params.max_proposals, params.min_confidence) == (50, 0.75)
    integer = "Input should be a valid integer, unable to parse string as an integer"
    for parameters, message in [
        ({"max_proposals": 0}, "Input should be greater than or equal to 1"),
        ({"max_detections": "many"}, integer),
        ({"min_confidence": float("nan")}, "Input should be a finite number"),
    ]:
        name = next(iter(parameters))
        raw = json.dumps(infer_body(png, parameters=parameters)).encode()  # NaN: Python's token
        response = client.post(f"/v2/models/{oip.model}/infer", content=raw)
        expected = {"error": f"invalid parameter '{name}': {message}"}
        assert (response.status_code, response.json()) == (400, expected)


def test_route_errors_are_error_objects(client: TestClient, oip: Any, png: bytes) -> None:
    cases = [
        (client.get("/v2/models/nope"), 404, "unknown model 'nope'"),
        (client.get("/v2/models/nope/ready"), 404, "unknown model 'nope'"),
        (client.post("/v2/models/nope/infer", json={}), 404, "unknown model 'nope'"),
        (
            client.post(f"/v2/models/{oip.model}/versions/2/infer", json=infer_body(png)),
            404,
            f"unknown version '2' of model '{oip.model}'",
        ),
        (
            client.post(f"/v2/models/{oip.model}/infer", content=b"not json"),
            400,
            "malformed JSON in the inference request",
        ),
        (
            client.post(
                f"/v2/models/{oip.model}/infer", json=infer_body(png, outputs=[{"name": "MASKS"}])
            ),
            400,
            f"unknown output 'MASKS' of model '{oip.model}': expected some of BOXES, SCORES, "
            "CLASS_IDS, LABELS",
        ),
    ]
    for response, status, message in cases:
        assert (response.status_code, response.json()) == (status, {"error": message})


def test_body_limit_and_compression(client: TestClient, oip: Any, png: bytes) -> None:
    url = f"/v2/models/{oip.model}/infer"
    too_big = client.post(url, content=b"{" + b" " * 5000 + b"}")
    assert (too_big.status_code, too_big.json()) == (
        413,
        {"error": "request body too large: the limit is 4096 bytes"},
    )
    packed = gzip.compress(json.dumps(infer_body(png)).encode())
    ok = client.post(url, content=packed, headers={"Content-Encoding": "gzip"})
    assert ok.status_code == 200 and ok.json()["outputs"][2]["data"] == [1, 0]
    bomb = gzip.compress(b"{" + b" " * 100_000 + b"}")
    inflated = client.post(url, content=bomb, headers={"Content-Encoding": "gzip"})
    assert inflated.status_code == 413
    unknown = client.post(url, content=packed, headers={"Content-Encoding": "br"})
    assert (unknown.status_code, unknown.json()) == (
        415,
        {"error": "unsupported Content-Encoding 'br': expected gzip or deflate"},
    )


def test_not_ready_answers(client: TestClient, oip: Any, engine: Any) -> None:
    engine.is_ready = False
    assert client.get("/v2/health/live").json() == {"live": True}
    ready = client.get("/v2/health/ready")
    assert (ready.status_code, ready.json()) == (503, {"error": "server not ready"})
    model = client.get(f"/v2/models/{oip.model}/ready")
    assert (model.status_code, model.json()) == (
        503,
        {"error": f"model '{oip.model}' is not ready"},
    )
    assert model.headers["retry-after"] == "5"
    engine.is_ready = True
    assert client.get(f"/v2/models/{oip.model}/ready").json() == {"name": oip.model, "ready": True}


def test_model_config_for_tritons_tools(client: TestClient, oip: Any) -> None:
    config = client.get(f"/v2/models/{oip.classify_model}/versions/{oip.version}/config")
    assert config.json() == {
        "name": oip.classify_model,
        "platform": "pytorch",
        "max_batch_size": 0,
        "input": [{"name": "IMAGE", "data_type": "TYPE_STRING", "dims": [1]}],
        "output": [
            {"name": "PROBABILITIES", "data_type": "TYPE_FP32", "dims": [3]},
            {"name": "LABELS", "data_type": "TYPE_STRING", "dims": [3]},
        ],
    }
    detect = client.get(f"/v2/models/{oip.model}/config").json()
    assert [(t["name"], t["data_type"], t["dims"]) for t in detect["output"]] == [
        ("BOXES", "TYPE_FP32", [-1, 4]),
        ("SCORES", "TYPE_FP32", [-1]),
        ("CLASS_IDS", "TYPE_INT64", [-1]),
        ("LABELS", "TYPE_STRING", [-1]),
    ]
    missing = client.get("/v2/models/nope/config")
    assert (missing.status_code, missing.json()) == (404, {"error": "unknown model 'nope'"})


def test_api_key_guards_metadata_and_inference_only(oip: Any, png: bytes) -> None:
    engine = oip.FakeEngine()
    with TestClient(oip.make_app(engine, api_key=True)) as client:
        for path in ("/v2", "/v2/health/live", "/v2/health/ready", f"/v2/models/{oip.model}/ready"):
            assert client.get(path).status_code == 200, path
        for path in (f"/v2/models/{oip.model}", f"/v2/models/{oip.model}/config"):
            meta = client.get(path)
            assert (meta.status_code, meta.json()) == (401, {"error": "missing API key"})
        url = f"/v2/models/{oip.model}/infer"
        wrong = client.post(url, json=infer_body(png), headers={"X-API-Key": "guess"})
        assert (wrong.status_code, wrong.json()) == (401, {"error": "invalid API key"})
        right = client.post(url, json=infer_body(png), headers={"X-API-Key": oip.api_key})
        assert right.status_code == 200
