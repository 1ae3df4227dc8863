"""``docker-compose`` with the repository's compose file: the CPU profile on the host network
(test override ``compose.host-network.yml``) comes up healthy, answers ``/detect``, comes back
after its process is SIGKILLed (the file's restart policy), and ``down`` leaves nothing."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from docker_helpers import ROOT, Container, docker, free_port, wait_ready

pytestmark = [pytest.mark.container, pytest.mark.timeout(1800)]

OVERRIDE = Path(__file__).with_name("compose.host-network.yml")
PROJECT = f"spp-compose-test-{os.getpid()}"  # two test runs at once do not meet


def compose_binary() -> str:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose missing (apt-get install docker-compose)", pytrace=False)
    return binary


def compose(
    *args: str, env: dict[str, str] | None = None, files: tuple[Path, ...] = (OVERRIDE,)
) -> subprocess.CompletedProcess[str]:
    """``docker-compose -p PROJECT -f docker-compose.yml [-f FILES] ARGS``; fails the test on
    a non-zero exit."""
    command = [compose_binary(), "-p", PROJECT, "-f", str(ROOT / "docker-compose.yml")]
    for file in files:
        command += ["-f", str(file)]
    result = subprocess.run(
        [*command, *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def project_leftovers() -> list[str]:
    """Containers and networks of the test project still known to the engine."""
    label = f"label=com.docker.compose.project={PROJECT}"
    containers = docker("ps", "-a", "-q", "--filter", label).stdout.split()
    networks = docker("network", "ls", "-q", "--filter", label).stdout.split()
    return containers + networks


@pytest.fixture(scope="module")
def compose_service(service_image: str) -> Iterator[Container]:
    """``docker-compose --profile cpu ... up -d spp-cpu``; ``down`` (checked) afterwards."""
    port, grpc_port = free_port(), free_port()
    env = {
        "SPP_TEST_IMAGE": service_image,
        "SPP_TEST_PORT": str(port),
        "SPP_TEST_GRPC_PORT": str(grpc_port),
    }
    try:
        compose("--profile", "cpu", "up", "-d", "--no-build", "spp-cpu", env=env)
        name = compose("--profile", "cpu", "ps", "-q", "spp-cpu", env=env).stdout.strip()
        service = Container(name, f"http://127.0.0.1:{port}", grpc_port)
        wait_ready(service.url, 300, service.not_running)
        yield service
    finally:
        compose("--profile", "cpu", "down", "--remove-orphans", "-t", "60", env=env)
    assert project_leftovers() == [], "docker-compose down left containers or networks behind"


def test_compose_up_healthy_and_detects(compose_service: Container, shapes_scene: bytes) -> None:
    deadline = time.monotonic() + 60
    while (health := compose_service.state("Health.Status")) != "healthy":
        assert health == "starting" and time.monotonic() < deadline, compose_service.logs()
        time.sleep(0.5)
    network = docker("inspect", "-f", "{{.HostConfig.NetworkMode}}", compose_service.name)
    assert network.stdout.strip() == "host"
    response = httpx.post(
        f"{compose_service.url}/detect",
        files={"image": ("p.jpg", shapes_scene, "image/jpeg")},
        params={"min_confidence": 0.3},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    assert response.json()["detections"], "the shipped model finds nothing on its own classes"


def test_sigkill_restarts_with_the_compose_restart_policy(compose_service: Container) -> None:
    """The server process killed with SIGKILL: the engine restarts the container (the file's
    ``restart: unless-stopped``) and it is ready again."""
    policy = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["spp-cpu"]
    assert policy["restart"] == "unless-stopped"
    pid = int(compose_service.state("Pid"))
    restarts = int(compose_service.state("RestartCount"))
    os.kill(pid, signal.SIGKILL)  # the server, PID 1 of the container, seen from the host
    deadline = time.monotonic() + 60
    while int(compose_service.state("RestartCount")) == restarts:
        assert time.monotonic() < deadline, "not restarted in 60 s"
        time.sleep(0.25)
    wait_ready(compose_service.url, 300, compose_service.not_running)
    assert int(compose_service.state("Pid")) != pid


def test_compose_config_accepts_the_gpu_service(docker_engine: None) -> None:
    """``docker-compose config`` of the file alone: valid, the GPU service reserves one GPU."""
    rendered = yaml.safe_load(compose("config", files=()).stdout)
    [device] = rendered["services"]["spp"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"] and device["driver"] == "nvidia"
