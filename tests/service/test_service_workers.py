"""``uvicorn app.main:app --workers 2``: real processes on real ports. Both workers serve HTTP
and gRPC (the gRPC port shared with ``SO_REUSEPORT``); a second server on the same gRPC port
fails to start with a clear message."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import tritonclient.grpc as grpcclient

from app.model.store import save_model

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening_inodes(port: int) -> set[str]:
    """Inodes of the TCP sockets listening on ``port`` (``/proc/net/tcp`` and ``tcp6``, state
    0A; gRPC binds an IPv4 address as an IPv4-mapped IPv6 socket)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                inodes.add(fields[9])
    return inodes


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            found.append(int(stat.parent.name))
    return found


def holds_socket(pid: int, inodes: set[str]) -> bool:
    try:
        links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
    except OSError:
        return False
    return any(link.startswith("socket:[") and link[8:-1] in inodes for link in links)


def grpc_serving_workers(master: int, port: int) -> set[int]:
    """The master's children that hold a socket listening on ``port``."""
    inodes = listening_inodes(port)
    return {pid for pid in children(master) if holds_socket(pid, inodes)}


#: The two ways to start the server: uvicorn's own command line, and the image's entry point.
LAUNCHERS = {
    "uvicorn": [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1"],
    "serve": [sys.executable, "-m", "app.service.serve", "--host", "127.0.0.1"],
}


def uvicorn(
    env: dict[str, str], port: int, *extra: str, launcher: str = "uvicorn"
) -> subprocess.Popen[str]:
    command = LAUNCHERS[launcher]
    return subprocess.Popen(
        [*command, "--port", str(port), *extra],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture
def png(images: Any) -> bytes:
    return images.encode(images.scene(64, 48, seed=5), "PNG")


@pytest.fixture
def env(tmp_path: Path, tiny_model: Any) -> dict[str, str]:
    save_model(
        tiny_model.net,
        tmp_path / "store" / "tiny",
        name="tiny",
        version="1",
        classes=tiny_model.classes,
        detection=tiny_model.manifest.detection,
        proposals=tiny_model.manifest.proposals,
    )
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MODEL_STORE": str(tmp_path / "store"),
        "MODEL_NAME": "tiny",
        "DEVICE": "cpu",
        "PROPOSAL_WORKERS": "1",
        "GRPC_PORT": str(free_port()),
        "LOG_LEVEL": "WARNING",
    }


@pytest.fixture(params=sorted(LAUNCHERS))
def two_workers(
    env: dict[str, str], request: pytest.FixtureRequest
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    server = uvicorn(env, port, "--workers", "2", launcher=request.param)
    try:
        yield server, port
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()


def _wait_for_two(server: subprocess.Popen[str], port: int, grpc_port: int) -> set[int]:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert server.poll() is None, server.stdout.read() if server.stdout else ""
        workers = grpc_serving_workers(server.pid, grpc_port)
        try:
            ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            ready = False
        if ready and len(workers) == 2:
            return workers
        time.sleep(0.5)
    pytest.fail("two workers did not both serve gRPC in time")


@pytest.mark.slow
def test_two_workers_serve_http_and_grpc_and_a_second_server_is_refused(
    two_workers: tuple[subprocess.Popen[str], int], env: dict[str, str], png: bytes
) -> None:
    server, port = two_workers
    grpc_port = int(env["GRPC_PORT"])
    workers = _wait_for_two(server, port, grpc_port)
    assert len(workers) == 2 and server.pid not in workers
    for _ in range(6):
        answer = httpx.post(
            f"http://127.0.0.1:{port}/detect",
            files={"image": ("x.png", png, "image/png")},
            timeout=60,
        )
        assert answer.status_code in (200, 503), answer.text  # 503: a worker still warming up
    for _ in range(6):  # a new channel each time: connections spread over the workers
        with grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}") as client:
            assert client.is_server_live()

    second = uvicorn(env, free_port())
    output, _ = second.communicate(timeout=240)
    assert second.returncode != 0
    assert "Failed to bind the gRPC server to 127.0.0.1:" in output
    assert "Set GRPC_PORT to a free port" in output
    assert grpc_serving_workers(server.pid, grpc_port) == workers, "the first keeps serving"
