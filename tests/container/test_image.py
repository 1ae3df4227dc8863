"""The image, built and run for real: ``docker run --network host --read-only --tmpfs /tmp``
with ``PORT``/``GRPC_PORT`` on free loopback ports and ``DEVICE=cpu``.

The last test stops the container while a request is in flight, so it stays last.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from docker_helpers import Container, docker, jpeg, run_container
from live_server import run_server

pytestmark = [pytest.mark.container, pytest.mark.timeout(1800)]

# No confidence threshold (everything the model's own score floor keeps), the model's default
# proposals.
DETECT_PARAMS = {"min_confidence": 0.0}
MODEL = "zf5-shapes"


@pytest.fixture(scope="module")
def container(service_image: str) -> Iterator[Container]:
    """The service on the host network, Docker's health check every 2 s."""
    health = ("--health-interval", "2s", "--health-start-period", "300s")
    with run_container(service_image, health) as running:
        yield running


def detections(url: str, photo: bytes, params: dict[str, Any] = DETECT_PARAMS) -> list[Any]:
    """``POST url/detect`` -> its detections, best first (the service's order)."""
    response = httpx.post(
        f"{url}/detect", files={"image": ("p.jpg", photo, "image/jpeg")}, params=params, timeout=120
    )
    assert response.status_code == 200, response.text
    found: list[Any] = response.json()["detections"]
    return found


def box(detection: dict[str, Any]) -> list[float]:
    return [detection["box"][key] for key in ("x1", "y1", "x2", "y2")]


def test_ready_and_not_root(container: Container) -> None:
    assert httpx.get(f"{container.url}/readyz", timeout=5).status_code == 200
    status = docker("exec", container.name, "cat", "/proc/1/status").stdout
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    assert "0" not in uids, f"PID 1 runs with uids {uids}"
    command = docker("exec", container.name, "cat", "/proc/1/cmdline").stdout.split("\0")
    assert command[1:3] == ["-m", "app.service.serve"], "the server itself is PID 1"


def test_root_filesystem_is_read_only(container: Container) -> None:
    attempt = docker("exec", container.name, "touch", "/srv/spp/x", check=False)
    assert attempt.returncode != 0 and "Read-only file system" in attempt.stderr


def test_answers_match_the_venv_server(
    container: Container, photos: dict[str, bytes], shapes_scene: bytes, tmp_path: Path
) -> None:
    """Same images, same options: /detect gives the same count, labels, confidences and boxes
    (within 0.5 px), /classify the same probabilities, as this checkout's ``.venv`` server."""
    images = {**photos, "shapes": shapes_scene}
    compared = 0
    with run_server(tmp_path, {"DEVICE": "cpu"}, ready_timeout_s=300) as venv:
        venv_url = venv.url
        for name, image in images.items():
            expected = detections(venv_url, image)
            got = detections(container.url, image)
            assert len(got) == len(expected), name
            assert [d["label"] for d in got] == [d["label"] for d in expected], name
            if expected:
                confidences = [[d["confidence"] for d in found] for found in (got, expected)]
                np.testing.assert_allclose(*confidences, atol=1e-4, err_msg=name)
                boxes = [[box(d) for d in found] for found in (got, expected)]
                np.testing.assert_allclose(*boxes, atol=0.5, err_msg=name)
            compared += len(expected)
            probabilities = [probabilities_of(url, image) for url in (container.url, venv_url)]
            assert probabilities[0].keys() == probabilities[1].keys(), name
            for label, probability in probabilities[1].items():
                assert abs(probabilities[0][label] - probability) < 1e-4, (name, label)
    assert compared >= 5, f"only {compared} detections compared"


def probabilities_of(url: str, image: bytes) -> dict[str, float]:
    """``POST url/classify`` -> {label: probability}."""
    response = httpx.post(
        f"{url}/classify", files={"image": ("p.jpg", image, "image/jpeg")}, timeout=120
    )
    assert response.status_code == 200, response.text
    return {p["label"]: p["probability"] for p in response.json()["predictions"]}


def test_v2_infer_over_grpc(container: Container, shapes_scene: bytes) -> None:
    """tritonclient's gRPC client on GRPC_PORT: the same boxes as ``/detect``."""
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{container.grpc_port}")
    assert client.is_server_ready() and client.is_model_ready(MODEL)
    image = grpcclient.InferInput("IMAGE", [1], "BYTES")
    image.set_data_from_numpy(np.array([shapes_scene], dtype=object))
    result = client.infer(MODEL, [image], parameters=DETECT_PARAMS)
    expected = detections(container.url, shapes_scene)
    assert expected, "nothing to compare"
    labels = [label.decode() for label in result.as_numpy("LABELS").tolist()]
    assert labels == [d["label"] for d in expected]
    np.testing.assert_allclose(result.as_numpy("BOXES"), [box(d) for d in expected], atol=1e-3)


def test_docker_healthcheck_reaches_healthy(container: Container) -> None:
    deadline = time.monotonic() + 60
    while (health := container.state("Health.Status")) != "healthy":
        assert health in ("starting", "healthy"), f"{health}:\n{container.logs()}"
        assert time.monotonic() < deadline, f"still {health} after 60 s"
        time.sleep(0.5)


def test_docker_stop_drains_a_request_in_flight(container: Container) -> None:
    """``docker stop`` (SIGTERM to PID 1) during a multi-scale /detect: answered 200, exit 0."""
    import skimage.data

    # Pixels the service has not seen (its proposal cache would answer at once otherwise).
    unseen = jpeg(np.ascontiguousarray(skimage.data.astronaut()[:, ::-1]))
    answer: dict[str, Any] = {}

    def slow_request() -> None:
        answer["response"] = httpx.post(
            f"{container.url}/detect",
            files={"image": ("p.jpg", unseen, "image/jpeg")},
            params={"scales": "multi"},
            timeout=120,
        )

    thread = threading.Thread(target=slow_request)
    thread.start()
    time.sleep(1.0)  # the request is in: selective search alone takes longer than this
    assert thread.is_alive(), "the request finished before the stop; nothing was in flight"
    docker("stop", "-t", "60", container.name, timeout=90)
    thread.join(30)
    assert answer["response"].status_code == 200, answer["response"].text
    assert container.state("Status") == "exited"
    assert container.state("ExitCode") == "0", container.logs()
