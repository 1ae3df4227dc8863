"""Benchmark: the service in its Docker image next to the same code in this checkout's venv.

- Start: wall time from ``docker run -d`` (host network, ``--read-only --tmpfs /tmp``,
  ``DEVICE=cpu``) to the first ``/readyz`` 200, over ``--starts`` fresh containers (each has an
  empty /tmp, so numba compiles its kernels again, as on every real start).
- ``POST /detect`` latency on the same scikit-image photos (JPEG bytes), one container and one
  ``python -m app.service.serve`` of this checkout, both on loopback with ``DEVICE=cpu``,
  ``PROPOSAL_WORKERS=2`` and the proposal cache off (``PROPOSAL_CACHE_SIZE=0``: every request
  runs selective search), requests interleaved (the order of the two servers alternates from
  repeat to repeat), one warm-up request per photo and server first; median wall time.
- The image's size (``docker image inspect``), its top-level directories and the ten largest
  directories under the venv's site-packages (``du`` inside the image).

    SPP_BENCH_IMAGE=spp-service:latest .venv/bin/python -m bench.bench_container [--repeats N]
        [--starts N] [--quick] [--write [BENCHMARKS.md]]
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import httpx
from PIL import Image

from bench.common import (
    REPO_ROOT,
    SizeOption,
    command_line,
    log,
    machine_description,
    markdown_table,
    parse_options,
    render_section,
    report,
)

SECTION = "bench_container"
SITE_PACKAGES = "/opt/venv/lib/python3.11/site-packages"
SERVER_ENV = {"DEVICE": "cpu", "PROPOSAL_WORKERS": "2", "PROPOSAL_CACHE_SIZE": "0"}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def docker(*args: str) -> str:
    """``docker ARGS`` -> stdout; raises on a non-zero exit."""
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout


def wait_ready(url: str, timeout_s: float = 300) -> float:
    """Poll ``url/readyz`` every 50 ms until 200 -> the monotonic time it answered."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return time.monotonic()
        time.sleep(0.05)
    raise RuntimeError(f"{url} not ready in {timeout_s} s")


@contextlib.contextmanager
def container(image: str) -> Iterator[tuple[str, float]]:
    """A container of ``image`` on the host network -> (its URL, seconds from run to ready)."""
    port, name = free_port(), f"spp-bench-{uuid.uuid4().hex[:8]}"
    env = [f"--env={key}={value}" for key, value in {**SERVER_ENV, "PORT": str(port)}.items()]
    started = time.monotonic()
    docker("run", "-d", "--name", name, "--network", "host", "--read-only", "--tmpfs", "/tmp",
           *env, "--env=GRPC_PORT=0", image)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        yield url, wait_ready(url) - started
    finally:
        docker("rm", "-f", name)


@contextlib.contextmanager
def venv_server() -> Iterator[str]:
    """``python -m app.service.serve`` of this checkout on a free loopback port -> its URL."""
    port = free_port()
    env = {**os.environ, **SERVER_ENV, "GRPC_PORT": "0", "LOG_LEVEL": "WARNING"}
    command = [sys.executable, "-m", "app.service.serve", "--port", str(port)]
    quiet = subprocess.DEVNULL
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=quiet, stderr=quiet)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)


def photos() -> dict[str, bytes]:
    """scikit-image's photos as JPEG (quality 90)."""
    import skimage.data

    encoded = {}
    for name in ("astronaut", "coffee", "chelsea"):
        out = io.BytesIO()
        Image.fromarray(getattr(skimage.data, name)()).save(out, format="JPEG", quality=90)
        encoded[name] = out.getvalue()
    return encoded


def detect_ms(url: str, image: bytes) -> float:
    """Wall time of one ``POST /detect`` in ms (answer checked: 200)."""
    started = time.perf_counter()
    response = httpx.post(f"{url}/detect", files={"image": ("p.jpg", image)}, timeout=300)
    elapsed = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    return elapsed


Times = dict[tuple[str, str], list[float]]


def latencies(urls: dict[str, str], images: dict[str, bytes], repeats: int) -> Times:
    """{(photo, server): [ms per repeat]}, the servers' order alternating per repeat."""
    for url in urls.values():
        for image in images.values():
            detect_ms(url, image)  # warm-up
    times: Times = {}
    for repeat in range(repeats):
        order = list(urls) if repeat % 2 == 0 else list(reversed(urls))
        for photo, image in images.items():
            for server in order:
                times.setdefault((photo, server), []).append(detect_ms(urls[server], image))
    return times


def image_size_lines(image: str) -> list[str]:
    """The image's size, its top-level directories and its largest site-packages entries."""
    size_gb = int(docker("image", "inspect", "-f", "{{.Size}}", image)) / 1e9
    du = [
        "run",
        "--rm",
        "--network",
        "none",
        "--user",
        "0",
        "--entrypoint",
        "du",
        image,
        "-x",
        "-m",
    ]
    top = sorted(docker(*du, "-d", "1", "/").splitlines(), key=lambda r: -int(r.split()[0]))
    packages = docker(*du, "-d", "2", SITE_PACKAGES).splitlines()
    largest = sorted(packages, key=lambda r: -int(r.split()[0]))[1:11]  # [0]: site-packages
    rows = [
        (row.split()[1].replace(SITE_PACKAGES, "site-packages"), row.split()[0]) for row in largest
    ]
    return [
        f"Image `{image}`: {size_gb:.2f} GB (`docker image inspect -f '{{{{.Size}}}}'`). "
        f"Top level (MB, `du -x -m -d 1 /` inside): "
        + ", ".join(f"`{r.split()[1]}` {r.split()[0]}" for r in top[:6]),
        "",
        f"Ten largest directories under the venv (`du -x -m -d 2 {SITE_PACKAGES}`):",
        "",
        markdown_table(["directory", "MB"], rows, "lr"),
    ]


def main(argv: list[str] | None = None) -> None:
    args = parse_options(
        __doc__,
        argv,
        SizeOption("--repeats", 5, 1, "interleaved repeats per photo and server"),
        SizeOption("--starts", 3, 1, "containers started for the run-to-ready time"),
    )
    image = os.environ.get("SPP_BENCH_IMAGE", "spp-service:latest")  # the tests set their tag
    machine = machine_description()
    starts = []
    for index in range(args.starts):
        with container(image) as (_, seconds):
            log(f"start {index + 1}: ready after {seconds:.1f} s")
            starts.append(seconds)
    images = photos()
    with container(image) as (container_url, _), venv_server() as venv_url:
        times = latencies({"container": container_url, "venv": venv_url}, images, args.repeats)
    rows = []
    for photo in images:
        box, local = (statistics.median(times[photo, s]) for s in ("container", "venv"))
        rows.append((photo, f"{box:.0f}", f"{local:.0f}", f"{box / local:.2f}"))
    lines = [
        "## Docker image: build, size, start, `/detect` in the container vs the venv",
        "",
        f"Command: `{command_line('bench.bench_container', argv)}`",
        "",
        f"Run to ready (`docker run -d` to the first `/readyz` 200, {args.starts} fresh "
        f"containers, s): "
        + ", ".join(f"{s:.1f}" for s in starts)
        + f"; median {statistics.median(starts):.1f}.",
        "",
        f"`POST /detect` wall time (ms), median of {args.repeats} interleaved repeats after a "
        "warm-up, one scale, proposal cache off, `DEVICE=cpu`, `PROPOSAL_WORKERS=2`:",
        "",
        markdown_table(["photo", "container ms", "venv ms", "container / venv"], rows, "lrrr"),
        "",
        *image_size_lines(image),
    ]
    report(SECTION, render_section(lines, machine, quick=args.quick), args.write)


if __name__ == "__main__":
    main()
