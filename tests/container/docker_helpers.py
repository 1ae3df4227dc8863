"""Helpers of the container tests: the docker CLI, containers of the service on the host
network (free loopback ports); tests/live_server.py starts this checkout's server beside them."""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from live_server import free_port
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


def docker(
    *args: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """``docker ARGS`` -> its completed process (text); ``check``: fail the test on non-zero."""
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        pytest.fail(f"docker {' '.join(args)} -> {result.returncode}:\n{result.stderr}")
    return result


def engine_problem() -> str | None:
    """Why no Docker engine can be used here, or ``None`` when one answers."""
    if shutil.which("docker") is None:
        return "no docker CLI on PATH (apt-get install docker.io)"
    try:
        info = subprocess.run(
            ["docker", "info"], capture_output=True, text=True, timeout=30, check=False
        )
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer in 30 s"
    if info.returncode != 0:
        return f"no Docker engine answers `docker info`: {info.stderr.strip()[-300:]}"
    return None


def wait_ready(url: str, timeout_s: float, alive: Callable[[], str | None]) -> None:
    """Poll ``url/readyz`` until 200; ``alive()`` returns why waiting is pointless, if so."""
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        problem = alive()
        if problem is not None:
            pytest.fail(problem, pytrace=False)
        if time.monotonic() > deadline:
            pytest.fail(f"{url} not ready in {timeout_s} s", pytrace=False)
        time.sleep(0.25)


@dataclass
class Container:
    """A container of the service on the host network."""

    name: str
    url: str
    grpc_port: int

    def logs(self) -> str:
        result = docker("logs", "--tail", "60", self.name, check=False)
        return result.stdout + result.stderr

    def state(self, field: str) -> str:
        """``docker inspect`` of ``.State.<field>`` (``Status``, ``ExitCode``, ``Pid``,
        ``Health.Status``) or, for ``RestartCount``, of the container itself."""
        path = field if field == "RestartCount" else f"State.{field}"
        return docker("inspect", "-f", "{{." + path + "}}", self.name).stdout.strip()

    def not_running(self) -> str | None:
        status = self.state("Status")
        return None if status == "running" else f"container {status}:\n{self.logs()}"


@contextlib.contextmanager
def run_container(image: str, extra_args: tuple[str, ...] = ()) -> Iterator[Container]:
    """``docker run -d --network host --read-only --tmpfs /tmp`` of ``image`` on free ports,
    ready (``/readyz`` 200) on entry, removed on exit."""
    port, grpc_port = free_port(), free_port()
    name = f"spp-test-{uuid.uuid4().hex[:10]}"
    docker(
        "run", "-d", "--name", name, "--network", "host", "--read-only", "--tmpfs", "/tmp",
        "-e", f"PORT={port}", "-e", f"GRPC_PORT={grpc_port}", "-e", "DEVICE=cpu",
        "-e", "PROPOSAL_WORKERS=2", *extra_args, image,
    )  # fmt: skip
    container = Container(name, f"http://127.0.0.1:{port}", grpc_port)
    try:
        wait_ready(container.url, 300, container.not_running)
        yield container
    finally:
        docker("rm", "-f", name, check=False)


def jpeg(rgb: np.ndarray) -> bytes:
    """An RGB array encoded as JPEG (quality 90)."""
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="JPEG", quality=90)
    return out.getvalue()
