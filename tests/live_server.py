"""A real server of this checkout (``python -m app.service.serve``) on a free loopback port,
for the tests that need a process rather than a TestClient (tests/service/test_service_live.py,
tests/container/test_image.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_ready(server: LiveServer, ready_timeout_s: float) -> None:
    """Until ``/readyz`` answers 200; fails the test with the server's log if it exits or the
    time runs out."""
    deadline = time.monotonic() + ready_timeout_s
    while True:
        if server.process.poll() is not None:
            pytest.fail(f"server exited with {server.process.returncode}:\n{server.log()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            pytest.fail(f"server not ready in {ready_timeout_s} s:\n{server.log()}")
        time.sleep(0.1)


@contextlib.contextmanager
def run_server(
    tmp_dir: Path, env: dict[str, str], ready_timeout_s: float = 180.0
) -> Iterator[LiveServer]:
    """Start the server in a subprocess (gRPC off unless ``env`` says otherwise), wait for
    ``/readyz`` 200, stop it with SIGTERM after."""
    port = free_port()
    log_path = tmp_dir / f"server-{port}.log"
    full_env = {
        **os.environ, "LOG_LEVEL": "INFO", "PROPOSAL_WORKERS": "2", "GRPC_PORT": "0", **env
    }  # fmt: skip
    command = [sys.executable, "-m", "app.service.serve", "--host", "127.0.0.1"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*command, "--port", str(port)], cwd=ROOT, env=full_env, stdout=log, stderr=log
        )
    server = LiveServer(f"http://127.0.0.1:{port}", process, log_path)
    try:
        _wait_ready(server, ready_timeout_s)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
