"""The model repository: several models, load / reload / unload through the repository
extension (HTTP and gRPC, with the real ``tritonclient``), reload without a failed request,
a failed reload that leaves the old version serving, and ``MODEL_CONTROL=none``."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from app.model.store import save_model
from app.service.factory import create_app
from app.service.registry import load_detector

BOXES = np.array([[0, 0, 30, 30], [5, 5, 60, 40], [10, 2, 50, 45]], dtype=np.float32)


def fixed_windows(image: np.ndarray, config: Any) -> np.ndarray:
    """A searcher: the same three windows for every image (fast and deterministic)."""
    return BOXES.copy()


def write_model(store: Path, tiny_model: Any, name: str, version: str = "1") -> Path:
    """``tiny_model`` saved as ``store/name`` at ``version``."""
    save_model(
        tiny_model.net,
        store / name,
        name=name,
        version=version,
        classes=tiny_model.classes,
        detection=tiny_model.manifest.detection,
        proposals=tiny_model.manifest.proposals,
    )
    return store / name


def set_version(model_dir: Path, version: str) -> None:
    manifest = json.loads((model_dir / "manifest.json").read_text())
    manifest["version"] = version
    (model_dir / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture
def store(tmp_path: Path, tiny_model: Any) -> Path:
    """A store with ``tiny-a`` and ``tiny-b`` (version 1 each)."""
    for name in ("tiny-a", "tiny-b"):
        write_model(tmp_path / "store", tiny_model, name)
    return tmp_path / "store"


class Live:
    """The service under uvicorn: ``http`` and ``grpc`` addresses, and request helpers."""

    def __init__(self, http: str, grpc: str) -> None:
        self.http, self.grpc = http, grpc

    def post(self, route: str, png: bytes, **params: Any) -> httpx.Response:
        return httpx.post(
            f"http://{self.http}{route}",
            files={"image": ("x.png", png, "image/png")},
            params=params,
            timeout=60,
        )

    def repository(self, action: str, **headers: str) -> httpx.Response:
        return httpx.post(f"http://{self.http}/v2/repository/{action}", headers=headers)


@pytest.fixture
def live(store: Path, service: Any, oip: Any, request: pytest.FixtureRequest) -> Iterator[Live]:
    """The real service on ``store`` (``MODEL_NAME=tiny-a``, ``MODEL_CONTROL=explicit``,
    overridden by an indirect parameter)."""
    from conftest import free_port  # tests/service/oip/conftest.py

    grpc_port = free_port()
    values = {"model_store": store, "model_name": "tiny-a", "grpc_port": grpc_port}
    values.update({"model_control": "explicit"} | getattr(request, "param", {}))
    app = create_app(
        service.settings(**values), detector_loader=load_detector, searcher=fixed_windows
    )
    with oip.serve_http(app, lifespan="on") as url:
        deadline = time.monotonic() + 60
        while httpx.get(f"http://{url}/readyz").status_code != 200:
            assert time.monotonic() < deadline, httpx.get(f"http://{url}/readyz").text
            time.sleep(0.05)
        yield Live(url, f"127.0.0.1:{grpc_port}")


def states(index: list[dict[str, Any]]) -> dict[str, str]:
    return {entry["name"]: entry["state"] for entry in index}


def infer_input(png: bytes, client: Any) -> Any:
    image = client.InferInput("IMAGE", [1], "BYTES")
    image.set_data_from_numpy(np.array([png], dtype=object))
    return image


def test_index_load_infer_unload_with_tritonclient(live: Live, png: bytes) -> None:
    http = httpclient.InferenceServerClient(live.http)
    grpc = grpcclient.InferenceServerClient(live.grpc)
    assert "model_repository" in http.get_server_metadata()["extensions"]
    assert states(http.get_model_repository_index()) == {"tiny-a": "READY", "tiny-b": "UNAVAILABLE"}
    assert live.post("/detect", png, model="tiny-b").status_code == 404

    http.load_model("tiny-b")
    assert http.is_model_ready("tiny-b") and grpc.is_model_ready("tiny-b-classify")
    index = grpc.get_model_repository_index(as_json=True)["models"]
    assert states(index) == {"tiny-a": "READY", "tiny-b": "READY"}
    expected = live.post("/detect", png, model="tiny-b", min_confidence=0).json()
    assert expected["model"] == {"name": "tiny-b", "version": "1"}
    params = {"min_confidence": 0.0}
    for client in (http, grpc):
        mod = httpclient if client is http else grpcclient
        result = client.infer("tiny-b", [infer_input(png, mod)], parameters=params)
        boxes = result.as_numpy("BOXES")
        want = [[d["box"][k] for k in ("x1", "y1", "x2", "y2")] for d in expected["detections"]]
        np.testing.assert_allclose(boxes, np.array(want, np.float32).reshape(-1, 4), rtol=1e-6)

    with pytest.raises(InferenceServerException, match="'config' is not supported"):
        http.load_model("tiny-b", config='{"backend": "onnx"}')
    with pytest.raises(InferenceServerException, match="is not supported"):
        grpc.load_model("tiny-b", files={"file:1/model.onnx": b"x"})
    grpc.unload_model("tiny-b")
    answer = live.post("/detect", png, model="tiny-b")
    assert answer.status_code == 404
    assert answer.json()["detail"] == "model 'tiny-b' is not loaded; loaded models: tiny-a"
    assert live.post("/detect", png).json()["model"]["name"] == "tiny-a"
    assert states(http.get_model_repository_index())["tiny-b"] == "UNAVAILABLE"
    with pytest.raises(InferenceServerException, match="unknown model"):
        grpc.infer("tiny-b", [infer_input(png, grpcclient)])
    assert httpx.get(f"http://{live.http}/v1/models/tiny-b").status_code == 404


def _hammer(live: Live, png: bytes, stop: threading.Event, seen: list[tuple[int, str]]) -> None:
    while not stop.is_set():
        response = live.post("/detect", png)
        version = response.json()["model"]["version"] if response.status_code == 200 else "-"
        seen.append((response.status_code, version))


def test_reload_under_load_swaps_once_and_fails_nothing(
    live: Live, store: Path, png: bytes
) -> None:
    stop = threading.Event()
    seen: list[list[tuple[int, str]]] = [[] for _ in range(4)]
    threads = [threading.Thread(target=_hammer, args=(live, png, stop, s)) for s in seen]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        set_version(store / "tiny-a", "2")
        reload = live.repository("models/tiny-a/load")
        after_reload = live.post("/detect", png).json()["model"]["version"]
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert reload.status_code == 200, reload.text
    assert after_reload == "2"
    for calls in seen:
        assert calls and all(status == 200 for status, _ in calls), calls
        versions = [version for _, version in calls]
        assert versions == sorted(versions), "the version changes once and never goes back"
        assert versions[-1] == "2"
    assert any(version == "1" for calls in seen for _, version in calls)


@pytest.mark.parametrize("fault", ["tampered_weights", "bad_manifest"])
def test_a_failed_reload_keeps_the_old_version(
    live: Live, store: Path, png: bytes, fault: str
) -> None:
    if fault == "tampered_weights":
        weights = store / "tiny-a" / "weights.safetensors"
        blob = bytearray(weights.read_bytes())
        blob[-1] ^= 0xFF
        weights.write_bytes(bytes(blob))
        set_version(store / "tiny-a", "2")
    else:
        (store / "tiny-a" / "manifest.json").write_text("{not json")
    answer = live.repository("models/tiny-a/load")
    assert answer.status_code == 400
    reason = answer.json()["error"]
    assert reason.startswith("failed to load model 'tiny-a': ")
    assert ("does not match the manifest" if fault == "tampered_weights" else "JSON") in reason
    detect = live.post("/detect", png)
    assert detect.status_code == 200 and detect.json()["model"]["version"] == "1"
    [entry] = [m for m in live.repository("index").json() if m["name"] == "tiny-a"]
    assert entry["state"] == "READY" and entry["version"] == "1"
    assert entry["reason"] in reason


@pytest.mark.parametrize("live", [{"model_control": "none", "api_key": "sesame"}], indirect=True)
def test_model_control_none_refuses_and_the_key_guards(live: Live) -> None:
    assert live.repository("models/tiny-b/load").status_code == 401
    assert live.repository("index").status_code == 401
    key = {"X-API-Key": "sesame"}
    for action in ("models/tiny-b/load", "models/tiny-a/unload"):
        answer = live.repository(action, **key)
        assert answer.status_code == 403
        assert "MODEL_CONTROL=explicit" in answer.json()["error"]
    assert states(live.repository("index", **key).json())["tiny-a"] == "READY"
    grpc = grpcclient.InferenceServerClient(live.grpc)
    with pytest.raises(InferenceServerException, match="MODEL_CONTROL"):
        grpc.load_model("tiny-b", headers={"x-api-key": "sesame"})
    with pytest.raises(InferenceServerException, match="missing API key"):
        grpc.unload_model("tiny-a")


@pytest.mark.parametrize(
    "live", [{"load_models": "tiny-b,tiny-a", "model_control": "none"}], indirect=True
)
def test_load_models_serves_two_models(live: Live, png: bytes) -> None:
    models = httpx.get(f"http://{live.http}/v1/models").json()["models"]
    assert [m["name"] for m in models] == ["tiny-a", "tiny-b"]
    assert all(m["state"] == "READY" and m["memory"]["parameters_bytes"] > 0 for m in models)
    assert httpx.get(f"http://{live.http}/v1/models/tiny-b").json()["manifest"]["name"] == "tiny-b"
    by_query = live.post("/detect", png, model="tiny-b").json()["model"]["name"]
    by_form = httpx.post(
        f"http://{live.http}/classify",
        files={"image": ("x.png", png, "image/png")},
        data={"model": "tiny-b"},
    ).json()["model"]["name"]
    assert by_query == by_form == "tiny-b"
    missing = live.post("/detect", png, model="nope")
    assert missing.status_code == 404
    assert missing.json()["detail"] == "model 'nope' is not loaded; loaded models: tiny-a, tiny-b"
    metrics = httpx.get(f"http://{live.http}/metrics").text
    assert 'spp_model_memory_bytes{kind="parameters",model="tiny-b"}' in metrics
    assert 'model="tiny-b",protocol="http",route="/detect",status="200"' in metrics
    grpc = grpcclient.InferenceServerClient(live.grpc)
    grpc.infer("tiny-b-classify", [infer_input(png, grpcclient)])
    metrics = httpx.get(f"http://{live.http}/metrics").text
    assert (
        'spp_requests_total{method="grpc",model="tiny-b-classify",protocol="grpc",'
        'route="ModelInfer",status="OK"} 1.0'
    ) in metrics


@pytest.mark.parametrize("live", [{"load_models": "tiny-a,ghost"}], indirect=True)
def test_a_startup_model_that_fails_is_unavailable_with_its_reason(live: Live, png: bytes) -> None:
    """The probes follow MODEL_NAME; the failed extra model says why in the index."""
    http = httpclient.InferenceServerClient(live.http)
    deadline = time.monotonic() + 30
    while states(http.get_model_repository_index()).get("ghost") == "LOADING":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert http.is_server_ready() and not http.is_model_ready("ghost")
    [ghost] = [m for m in http.get_model_repository_index() if m["name"] == "ghost"]
    assert ghost["state"] == "UNAVAILABLE" and "ghost" in ghost["reason"]
    answer = live.post("/detect", png, model="ghost")
    assert answer.status_code == 503
    assert answer.json()["detail"].startswith("model not ready: model failed to load: ")
