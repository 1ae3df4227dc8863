"""Helpers of the container tests: the docker CLI, containers of the service on the host
network (free loopback ports), and this checkout's ``.venv`` server to compare them with."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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


@contextlib.contextmanager
def run_venv_server(tmp_dir: Path, env: dict[str, str]) -> Iterator[str]:
    """``python -m app.service.serve`` of this checkout on a free loopback port -> its URL;
    stopped with SIGTERM on exit."""
    port = free_port()
    log_path = tmp_dir / f"venv-server-{port}.log"
    full_env = {**os.environ, "PROPOSAL_WORKERS": "2", "GRPC_PORT": "0", **env}
    command = [
        sys.executable,
        "-m",
        "app.service.serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=full_env, stdout=log, stderr=log)

    def exited() -> str | None:
        if process.poll() is None:
            return None
        return f"server exited {process.returncode}:\n{log_path.read_text(errors='replace')}"

    try:
        wait_ready(f"http://127.0.0.1:{port}", 300, exited)
        yield f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def jpeg(rgb: np.ndarray) -> bytes:
    """An RGB array encoded as JPEG (quality 90)."""
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="JPEG", quality=90)
    return out.getvalue()
