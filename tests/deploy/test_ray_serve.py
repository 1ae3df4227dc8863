"""The service on Ray Serve: settings, and (slow) a local Ray instance on loopback with two
replicas of the tiny model behind Ray's HTTP proxy, one of them killed mid-way."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ray.serve")

from app.deploy.ray_serve import RayServeSettings

APP_NAME = "spp"
DEPLOYMENT = "spp-service"


def settings(**values: Any) -> RayServeSettings:
    return RayServeSettings(_env_file=None, **values)  # type: ignore[call-arg]


def test_one_gpu_per_replica_unless_on_cpu() -> None:
    assert settings(device="cuda").gpus_per_replica() == 1.0
    assert settings(device="auto").gpus_per_replica() == 1.0
    assert settings(device="cpu").gpus_per_replica() == 0.0
    assert settings(device="cuda", replica_gpus=0.5).gpus_per_replica() == 0.5


def test_replicas_get_the_service_settings_with_secrets() -> None:
    from app.service.settings import Settings

    values = settings(api_key="k", model_name="m", max_replicas=3).service_settings()
    assert set(values) == set(Settings.model_fields)
    rebuilt = Settings(_env_file=None, **values)  # type: ignore[call-arg]
    assert rebuilt.api_key is not None and rebuilt.api_key.get_secret_value() == "k"
    assert rebuilt.model_name == "m"
    assert rebuilt.grpc_port == 0, "replicas sharing a node cannot share a gRPC port"


def test_serve_run_builds_one_gpu_replicas_autoscaled_on_ongoing_requests() -> None:
    """What ``serve run app.deploy.ray_serve:app key=value`` builds (the same call Ray makes)."""
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary

    from app.deploy.ray_serve import app

    args = {"device": "cuda", "max_replicas": "3", "max_batch_size": "4", "queue_size": "12",
            "request_timeout_s": "30"}  # fmt: skip
    application = call_user_app_builder_with_args_if_necessary(app, args)
    deployment = application._bound_deployment  # Ray keeps the deployment here
    assert deployment.ray_actor_options == {"num_gpus": 1.0, "num_cpus": 1.0}
    assert deployment.max_ongoing_requests == 12
    scaling = deployment._deployment_config.autoscaling_config
    assert (scaling.min_replicas, scaling.max_replicas) == (1, 3)
    assert scaling.target_ongoing_requests == 4.0
    assert deployment._deployment_config.graceful_shutdown_timeout_s == 2 * 30.0 + 5
    (service_settings,) = deployment.init_args
    assert service_settings["device"] == "cuda" and service_settings["queue_size"] == 12


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory: pytest.TempPathFactory, tiny_model: Any) -> Path:
    from app.model.store import save_model

    store = tmp_path_factory.mktemp("store")
    save_model(
        tiny_model.net, store / "tiny", name="tiny", version="1", classes=tiny_model.classes,
        detection=tiny_model.manifest.detection, proposals=tiny_model.manifest.proposals,
    )  # fmt: skip
    return store


@pytest.fixture(scope="module")
def ray_app(tiny_store: Path) -> Iterator[str]:
    """Two replicas on a local Ray instance bound to loopback; yields the proxy's URL.

    Ray replaces a loopback node address by the host's interface address unless it believes it
    runs a single-machine cluster (its macOS/Windows default), which this switch forces: every
    Ray process then listens on and talks to 127.0.0.1 only.
    """
    import ray
    from ray import serve
    from ray._private import ray_constants

    from app.deploy.ray_serve import build_app

    port = free_port()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR, "0")  # for Ray's processes
        patch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)  # for this one
        ray.init(
            num_cpus=4, num_gpus=0, include_dashboard=False, _node_ip_address="127.0.0.1",
            logging_level="WARNING", log_to_driver=False,
        )  # fmt: skip
        try:
            assert ray.util.get_node_ip_address() == "127.0.0.1"
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            args = {
                "model_store": str(tiny_store), "model_name": "tiny", "device": "cpu",
                "min_replicas": "2", "max_replicas": "2", "replica_cpus": "1",
                "proposal_workers": "1",
            }  # fmt: skip
            serve.run(build_app(args), name=APP_NAME, route_prefix="/")
            yield f"http://127.0.0.1:{port}"
        finally:
            serve.shutdown()
            ray.shutdown()


def replica_names() -> list[str]:
    import ray

    return sorted(
        actor["name"]
        for actor in ray.util.list_named_actors(all_namespaces=True)
        if actor["namespace"] == "serve" and DEPLOYMENT in actor["name"]
        and "REPLICA" in actor["name"].upper()
    )  # fmt: skip


def detect(url: str, png: bytes) -> Any:
    import httpx

    files = {"image": ("x.png", png, "image/png")}
    return httpx.post(f"{url}/detect", files=files, params={"min_confidence": 0}, timeout=60)


def infer_v2(url: str, png: bytes) -> list[tuple[str, dict[str, float]]]:
    """``POST /v2/models/tiny/infer`` through ``tritonclient.http`` (binary tensors): the
    detections as ``(label, box)`` in ``/detect``'s form."""
    import numpy as np
    import tritonclient.http as httpclient

    image = httpclient.InferInput("IMAGE", [1], "BYTES")
    image.set_data_from_numpy(np.array([png], dtype=object))
    with httpclient.InferenceServerClient(url.removeprefix("http://")) as client:
        result = client.infer("tiny", [image], parameters={"min_confidence": 0.0})
    boxes = result.as_numpy("BOXES").tolist()
    labels = [label.decode() for label in result.as_numpy("LABELS").tolist()]
    return [
        (label, dict(zip(("x1", "y1", "x2", "y2"), box, strict=True)))
        for label, box in zip(labels, boxes, strict=True)
    ]


def rounded(detections: list[tuple[str, dict[str, float]]]) -> list[tuple[str, list[float]]]:
    """Boxes as float32 values (what the v2 outputs carry), to compare with ``/detect``'s."""
    import numpy as np

    return [(label, np.float32(list(box.values())).tolist()) for label, box in detections]


@pytest.mark.slow
def test_two_replicas_survive_losing_one(ray_app: str, images: Any) -> None:
    import httpx
    import ray

    png = images.encode(images.scene(96, 72, seed=3), "PNG")
    assert httpx.get(f"{ray_app}/readyz", timeout=10).json()["status"] == "ready"
    first = detect(ray_app, png)
    assert first.status_code == 200, first.text
    expected = [(d["label"], d["box"]) for d in first.json()["detections"]]
    assert expected, "the tiny model finds something at min_confidence 0"
    assert rounded(infer_v2(ray_app, png)) == rounded(expected), "v2 through Ray's proxy"

    names = replica_names()
    assert len(names) == 2, names
    ray.kill(ray.get_actor(names[0], namespace="serve"), no_restart=True)
    started = time.monotonic()
    for _ in range(6):
        answer = detect(ray_app, png)
        assert answer.status_code == 200, answer.text
        assert [(d["label"], d["box"]) for d in answer.json()["detections"]] == expected
    assert rounded(infer_v2(ray_app, png)) == rounded(expected)
    assert time.monotonic() - started < 60
