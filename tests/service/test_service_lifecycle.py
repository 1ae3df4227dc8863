"""Readiness, model-load faults, auth, logs, overload (503), deadlines (504), OOM, batching."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch

API_KEY = "s3cret-key-0123456789"


@pytest.fixture
def png(images: Any) -> bytes:
    return images.encode(images.scene(64, 48, seed=5), "PNG")


def post(client: Any, data: bytes, path: str = "/detect", **kwargs: Any) -> Any:
    return client.post(path, files={"image": ("x.png", data, "image/png")}, **kwargs)


# ----------------------------------------------------------------------------- readiness


def test_not_ready_until_loaded_then_ready(make_app: Any, png: bytes, service: Any) -> None:
    release = threading.Event()

    def slow_loader(_: Any) -> Any:
        release.wait(30)
        return make_app.detector

    with make_app.client(loader=slow_loader, ready=False) as client:
        assert client.get("/healthz").status_code == 200
        loading = client.get("/readyz")
        assert loading.status_code == 503
        assert loading.json() == {
            "status": "loading",
            "reason": "loading model 'tiny-random'",
            "model": None,
            "device": None,
        }
        refused = post(client, png)
        assert refused.status_code == 503
        assert refused.json() == {"detail": "model not ready: loading model 'tiny-random'"}
        assert client.get("/v1/models").json() == {"models": []}
        assert "spp_model_ready 0.0" in client.get("/metrics").text
        release.set()
        service.wait_ready(client)
        assert post(client, png).status_code == 200


def _store_with_tiny_model(tmp_path: Path, tiny_model: Any) -> Path:
    from app.model.store import save_model

    save_model(
        tiny_model.net,
        tmp_path / "tiny",
        name="tiny",
        version="1",
        classes=tiny_model.classes,
        detection=tiny_model.manifest.detection,
        proposals=tiny_model.manifest.proposals,
    )
    return tmp_path


def _readyz_after_load(make_app: Any, store: Path, name: str) -> Any:
    from app.service.registry import load_detector

    with make_app.client(
        loader=load_detector, model_store=store, model_name=name, ready=False
    ) as client:
        for _ in range(500):
            body = client.get("/readyz").json()
            if body["status"] != "loading":
                return client.get("/readyz"), post(client, b"x")
            threading.Event().wait(0.02)
    pytest.fail("model load never finished")


def test_real_model_store_loads(make_app: Any, tmp_path: Path, tiny_model: Any) -> None:
    store = _store_with_tiny_model(tmp_path, tiny_model)
    ready, _ = _readyz_after_load(make_app, store, "tiny")
    assert ready.status_code == 200
    assert ready.json()["model"] == {"name": "tiny", "version": "1"}


def test_precision_setting_reaches_the_detector(
    make_app: Any, tmp_path: Path, tiny_model: Any
) -> None:
    """PRECISION=bfloat16 loads a bfloat16 detector; float16 on a CPU leaves the service up
    and not ready, saying why."""
    from app.service.registry import load_detector
    from app.service.settings import Settings

    store = _store_with_tiny_model(tmp_path, tiny_model)
    settings = Settings(model_store=store, model_name="tiny", device="cpu", precision="bfloat16")
    assert load_detector(settings).precision == "bfloat16"
    with make_app.client(
        loader=load_detector, model_store=store, model_name="tiny", precision="float16", ready=False
    ) as client:
        for _ in range(500):
            body = client.get("/readyz").json()
            if body["status"] != "loading":
                break
            threading.Event().wait(0.02)
        assert client.get("/readyz").status_code == 503
        assert "float16 inference needs a CUDA device" in json.dumps(body)
        assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    ("fault", "name", "reason_part"),
    [
        ("missing_weights", "tiny", "weights.safetensors: cannot read weights"),
        ("truncated_weights", "tiny", "weights.safetensors: not a valid safetensors file"),
        ("tampered_weights", "tiny", "does not match the manifest"),
        ("pickle_weights", "tiny", "weights.safetensors: not a valid safetensors file"),
        ("unknown_manifest_key", "tiny", "invalid manifest"),
        ("path_separator", "../tiny", "invalid model name '../tiny'"),
        ("no_such_model", "absent", "no such model directory"),
    ],
)
def test_model_load_faults_keep_the_service_unready(
    make_app: Any, tmp_path: Path, tiny_model: Any, fault: str, name: str, reason_part: str
) -> None:
    store = _store_with_tiny_model(tmp_path, tiny_model)
    weights = store / "tiny" / "weights.safetensors"
    manifest = store / "tiny" / "manifest.json"
    if fault == "missing_weights":
        weights.unlink()
    elif fault == "truncated_weights":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif fault == "tampered_weights":
        blob = bytearray(weights.read_bytes())
        blob[-1] ^= 0xFF
        weights.write_bytes(bytes(blob))
    elif fault == "pickle_weights":
        torch.save({"a": torch.zeros(2)}, weights)
    elif fault == "unknown_manifest_key":
        raw = json.loads(manifest.read_text())
        raw["surprise"] = 1
        manifest.write_text(json.dumps(raw))
    ready, detect = _readyz_after_load(make_app, store, name)
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "failed"
    assert body["reason"].startswith("model failed to load: ")
    assert reason_part in body["reason"], body["reason"]
    assert detect.status_code == 503
    assert detect.json()["detail"] == f"model not ready: {body['reason']}"


def test_loader_crash_is_reported(make_app: Any) -> None:
    def broken(_: Any) -> Any:
        raise RuntimeError("CUDA requested but no GPU")

    with make_app.client(loader=broken, ready=False) as client:
        for _ in range(200):
            body = client.get("/readyz").json()
            if body["status"] == "failed":
                break
            threading.Event().wait(0.01)
        assert body["reason"] == "model failed to load: RuntimeError: CUDA requested but no GPU"
        assert client.get("/healthz").status_code == 200


# ----------------------------------------------------------------------------- auth, logs


@pytest.mark.parametrize(
    ("method", "path", "protected"),
    [
        ("post", "/detect", True),
        ("post", "/classify", True),
        ("get", "/v1/models", True),
        ("get", "/healthz", False),
        ("get", "/readyz", False),
        ("get", "/metrics", False),
        ("get", "/", False),
    ],
)
def test_api_key(
    make_app: Any, png: bytes, method: str, path: str, protected: bool, caplog: Any
) -> None:
    def call(client: Any, headers: dict[str, str]) -> Any:
        if method == "post":
            return post(client, png, path, headers=headers)
        return client.get(path, headers=headers)

    with make_app.client(api_key=API_KEY) as client:
        missing = call(client, {})
        wrong = call(client, {"Authorization": "Bearer nope"})
        bearer = call(client, {"Authorization": f"Bearer {API_KEY}"})
        header = call(client, {"X-API-Key": API_KEY})
    if protected:
        assert missing.status_code == 401 and missing.json() == {"detail": "missing API key"}
        assert missing.headers["www-authenticate"] == "Bearer"
        assert wrong.status_code == 401 and wrong.json() == {"detail": "invalid API key"}
    else:
        assert missing.status_code == 200 and wrong.status_code == 200
    assert bearer.status_code == 200 and header.status_code == 200
    logged = json.dumps(log_lines(caplog))
    assert "request_id" in logged and API_KEY not in logged


def test_open_without_api_key(client: Any, png: bytes) -> None:
    assert post(client, png, headers={"Authorization": "Bearer whatever"}).status_code == 200


def log_lines(caplog: Any) -> list[dict[str, Any]]:
    """The JSON lines our formatter makes of the captured records."""
    from app.service.logs import JsonFormatter

    formatter = JsonFormatter()
    return [json.loads(formatter.format(record)) for record in caplog.records]


def test_one_json_log_line_per_request(client: Any, png: bytes, caplog: Any) -> None:
    response = post(client, png, headers={"X-Request-ID": "req-42"})
    [line] = [entry for entry in log_lines(caplog) if entry.get("request_id") == "req-42"]
    assert line["route"] == "/detect" and line["status"] == 200 and line["method"] == "POST"
    assert line["duration_ms"] > 0
    assert line["timings_ms"] == response.json()["timings_ms"]


def test_cors_off_by_default_and_on_when_configured(make_app: Any) -> None:
    preflight = {"Origin": "https://example.org", "Access-Control-Request-Method": "POST"}
    with make_app.client() as client:
        assert (
            "access-control-allow-origin"
            not in client.options("/detect", headers=preflight).headers
        )
    with make_app.client(cors_origins="https://example.org") as client:
        response = client.options("/detect", headers=preflight)
        assert response.headers["access-control-allow-origin"] == "https://example.org"


# ----------------------------------------------------------------------------- load and faults


def test_full_queue_answers_503_with_retry_after(make_app: Any, png: bytes) -> None:
    detector = make_app.detector
    detector.gate = threading.Event()
    with make_app.client(queue_size=2) as client, ThreadPoolExecutor(2) as pool:
        held = [pool.submit(post, client, png) for _ in range(2)]
        assert detector.started.wait(10)
        for _ in range(200):  # both requests admitted (one running, one queued)
            if "spp_admitted_requests 2.0" in client.get("/metrics").text:
                break
            threading.Event().wait(0.01)
        refused = post(client, png)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert refused.json() == {
            "detail": "server busy: too many requests in progress, retry later"
        }
        detector.gate.set()
        assert [f.result().status_code for f in held] == [200, 200]
        assert post(client, png).status_code == 200
        assert 'spp_rejected_total{reason="overload"} 1.0' in client.get("/metrics").text


def test_deadline_answers_504(make_app: Any, png: bytes) -> None:
    with make_app.client(request_timeout_s=0.5) as client:
        make_app.detector.delay_s = 1.5
        response = post(client, png)
        assert response.status_code == 504
        assert response.json() == {"detail": "request timed out after 0.5 s"}
        make_app.detector.delay_s = 0.0
        time.sleep(1.2)  # the abandoned call still occupies the inference thread
        assert post(client, png).status_code == 200


@pytest.mark.parametrize("error", [torch.OutOfMemoryError("CUDA out of memory"), MemoryError()])
@pytest.mark.parametrize("path", ["/detect", "/classify"])
def test_out_of_memory_is_503_then_recovers(
    make_app: Any, png: bytes, error: BaseException, path: str
) -> None:
    with make_app.client() as client:
        make_app.detector.failures.append(error)
        response = post(client, png, path)
        assert response.status_code == 503
        assert response.json() == {"detail": "out of memory during inference, retry later"}
        assert response.headers["retry-after"] == "1"
        assert post(client, png, path).status_code == 200
        assert client.get("/readyz").status_code == 200


def test_detector_crash_is_500_and_isolated(make_app: Any, png: bytes) -> None:
    with make_app.client() as client:
        make_app.detector.failures.append(ValueError("bug"))
        response = post(client, png)
        assert response.status_code == 500 and response.json() == {"detail": "inference failed"}
        assert post(client, png).status_code == 200


def test_concurrent_requests_share_one_batch(make_app: Any, images: Any) -> None:
    detector = make_app.detector
    sizes = [(64, 48), (80, 60), (96, 72)]
    uploads = [images.encode(images.scene(w, h, seed=i), "PNG") for i, (w, h) in enumerate(sizes)]
    with make_app.client(batch_wait_ms=300, max_batch_size=8) as client:
        detector.detect_batches.clear()
        with ThreadPoolExecutor(3) as pool:
            responses = list(pool.map(lambda data: post(client, data), uploads))
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert sum(detector.detect_batches) == 3
    assert max(detector.detect_batches) >= 2, detector.detect_batches
    assert max(r.json()["batch_size"] for r in responses) == max(detector.detect_batches)
    # each answer is about its own image
    assert [(r.json()["width"], r.json()["height"]) for r in responses] == sizes


def test_in_flight_requests_finish_on_shutdown(make_app: Any, png: bytes) -> None:
    """Leaving the ``with`` (lifespan exit) waits for the request being served."""
    detector = make_app.detector
    detector.delay_s = 0.5
    with make_app.client() as client, ThreadPoolExecutor(1) as pool:
        pending = pool.submit(post, client, png)
        assert detector.started.wait(10)
    assert pending.result().status_code == 200
