"""Benchmark: the HTTP service under bounded loopback load.

Starts ``uvicorn app.main:app`` as a subprocess on a free loopback port (``MODEL_NAME``,
``MODEL_STORE`` and ``DEVICE=cpu`` in its environment), waits for ``/readyz``, then posts the
same generated shapes image (JPEG, multipart field ``image``) to ``/detect`` from an asyncio
``httpx`` client at concurrency 1, 4 and 16, each for a fixed duration (requests still in
flight at the deadline are awaited and counted). Reports throughput, p50/p99 latency, status
counts, the ratio throughput(c) / sequential rate (c = 1), and the server's peak resident
memory (VmRSS of the server process and its children, sampled every 100 ms).

When ``model_store/zf5-shapes`` is absent, a random-weight model of the same size (width 0.25,
fc 512) is saved into a temporary store and served instead; the report says so. When
``app/main.py`` is absent, the benchmark is skipped with a message.

    .venv/bin/python -m bench.bench_service [--quick] [--duration S] [--write [BENCHMARKS.md]]
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from bench.common import (
    DEFAULT_MODEL,
    MODEL_STORE,
    REPO_ROOT,
    SizeOption,
    command_line,
    generated_images,
    log,
    machine_description,
    markdown_table,
    parse_options,
    render_section,
    report,
)

SECTION = "bench_service"
CONCURRENCY = (1, 4, 16)
READY_TIMEOUT_S = 180.0


@dataclass
class LoadResult:
    concurrency: int
    seconds: float
    latencies: list[float] = field(default_factory=list)  # seconds, status 200 only
    statuses: Counter[str] = field(default_factory=Counter)
    peak_rss_mib: float = 0.0

    @property
    def ok(self) -> int:
        return self.statuses.get("200", 0)

    @property
    def throughput(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
        return ordered[index]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            for child in task.read_text().split():
                found += _descendants(int(child))
        except (OSError, ValueError):
            continue
    return found


def tree_rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants, MiB (psutil when installed)."""
    try:
        import psutil  # type: ignore[import-untyped]

        process = psutil.Process(pid)
        procs = [process, *process.children(recursive=True)]
        return sum(p.memory_info().rss for p in procs) / 2**20
    except ImportError:
        return sum(_rss_kib(p) for p in _descendants(pid)) / 1024
    except Exception:  # the process ended between the calls
        return 0.0


class RssSampler:
    """Samples the server's RSS in a thread; ``peak()`` since the last ``reset()``."""

    def __init__(self, pid: int, interval_s: float = 0.1) -> None:
        self.pid, self.interval_s = pid, interval_s
        self._peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, tree_rss_mib(self.pid))
            self._stop.wait(self.interval_s)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def reset(self) -> None:
        self._peak = tree_rss_mib(self.pid)

    def peak(self) -> float:
        return max(self._peak, tree_rss_mib(self.pid))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


async def load(url: str, image: bytes, concurrency: int, duration_s: float) -> LoadResult:
    import httpx

    result = LoadResult(concurrency, 0.0)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120.0, limits=limits) as client:
        start = time.perf_counter()
        deadline = start + duration_s

        async def worker() -> None:
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                try:
                    response = await client.post(
                        url, files={"image": ("bench.jpg", image, "image/jpeg")}
                    )
                    status = str(response.status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                if status == "200":
                    result.latencies.append(time.perf_counter() - sent)
                result.statuses[status] += 1
                if status not in ("200",):
                    await asyncio.sleep(0.05)  # back off on errors (503 busy, ...)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.seconds = time.perf_counter() - start
    return result


def wait_ready(base: str, process: subprocess.Popen[bytes], timeout_s: float) -> dict[str, str]:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode}")
        try:
            response = httpx.get(f"{base}/readyz", timeout=5.0)
            if response.status_code == 200:
                return dict(response.json())
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the server was not ready after {timeout_s:.0f} s")


def prepare_store(tmp: Path) -> tuple[Path, str, str]:
    """(store, model name, description): the trained default model or a random stand-in."""
    if (MODEL_STORE / DEFAULT_MODEL / "manifest.json").is_file():
        return MODEL_STORE, DEFAULT_MODEL, f"`{DEFAULT_MODEL}` (trained, from model_store/)"
    from app.data.shapes import CLASSES
    from app.model.store import build_random_model, save_model

    name = f"{DEFAULT_MODEL}-random"
    model = build_random_model(list(CLASSES), width=0.25, fc_dim=512, seed=0, name=name)
    save_model(
        model.net,
        tmp / name,
        name=name,
        version="0",
        classes=list(CLASSES),
        description="random weights at the default model's size, for bench_service",
    )
    return (
        tmp,
        name,
        f"random weights at the default model's size (width 0.25, fc 512), saved to a temporary "
        f"store: model_store/{DEFAULT_MODEL} was not found",
    )


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def request_image() -> tuple[bytes, str]:
    """One generated shapes image as JPEG bytes (quality 90), and its size ``"W x H"``."""
    with generated_images(1) as images:
        image = images[0]
        ok, jpeg = cv2.imencode(".jpg", image.rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        return jpeg.tobytes(), f"{image.rgb.shape[1]} x {image.rgb.shape[0]}"


def server_env(name: str, store: Path) -> dict[str, str]:
    """The server's environment: this process's, plus the model and the bench settings."""
    return {
        **os.environ,
        "MODEL_NAME": name,
        "MODEL_STORE": str(store),
        "DEVICE": "cpu",
        "LOG_LEVEL": "WARNING",
        # Every request posts the same image: with the proposal cache on, all but the
        # first would skip selective search. Off, each request pays the whole pipeline.
        "PROPOSAL_CACHE_SIZE": "0",
    }


@dataclass
class ServerRun:
    """What one server run measured: start-up, memory, one load result per level."""

    ready_s: float
    ready: dict[str, str]
    idle_rss: float
    results: list[LoadResult]

    @property
    def overall_peak(self) -> float:
        return max(r.peak_rss_mib for r in self.results)


def measure_levels(
    base: str,
    process: subprocess.Popen[bytes],
    image_bytes: bytes,
    levels: tuple[int, ...],
    duration_s: float,
) -> ServerRun:
    """Wait for the server, warm it up, then load it at each concurrency level in turn."""
    sampler: RssSampler | None = None
    try:
        started = time.perf_counter()
        ready = wait_ready(base, process, READY_TIMEOUT_S)
        ready_s = time.perf_counter() - started
        sampler = RssSampler(process.pid).start()
        idle_rss = tree_rss_mib(process.pid)
        log("warm-up: 2 sequential requests")
        asyncio.run(load(f"{base}/detect", image_bytes, 1, 0.01))
        asyncio.run(load(f"{base}/detect", image_bytes, 1, 0.01))
        results = []
        for concurrency in levels:
            log(f"concurrency {concurrency} for {duration_s:.0f} s")
            sampler.reset()
            result = asyncio.run(load(f"{base}/detect", image_bytes, concurrency, duration_s))
            result.peak_rss_mib = sampler.peak()
            results.append(result)
        return ServerRun(ready_s, ready, idle_rss, results)
    finally:
        if sampler is not None:
            sampler.stop()


def serve_and_measure(
    tmp: Path,
    store: Path,
    name: str,
    image_bytes: bytes,
    levels: tuple[int, ...],
    duration_s: float,
) -> ServerRun | str:
    """Start ``uvicorn app.main:app`` on a free loopback port and measure it; on a failure, the
    reason and the end of the server's log (Markdown lines)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp / "server.log"
    with log_path.open("wb") as server_log:
        command = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1"]
        command += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
        log(f"starting {' '.join(command)}")
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=server_env(name, store),
            stdout=server_log,
            stderr=subprocess.STDOUT,
        )
        try:
            return measure_levels(base, process, image_bytes, levels, duration_s)
        except RuntimeError as exc:
            stop_server(process)
            tail = log_path.read_text(errors="replace")[-3000:]
            return "\n".join([f"Failed: {exc}.", "", "```", tail, "```"])
        finally:
            stop_server(process)


def results_table(results: list[LoadResult], sequential: float) -> str:
    """One row per concurrency level: throughput, its ratio, latency, statuses, memory."""
    rows = []
    for r in results:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(r.statuses.items()))
        ratio = f"**{r.throughput / sequential:.2f}x**" if sequential else "n/a"
        rows.append(
            [
                r.concurrency,
                f"{r.seconds:.1f}",
                r.ok,
                f"{r.throughput:.2f}",
                ratio,
                f"{r.percentile(0.5) * 1e3:.0f}",
                f"{r.percentile(0.99) * 1e3:.0f}",
                statuses,
                f"{r.peak_rss_mib:.0f}",
            ]
        )
    return markdown_table(
        [
            "concurrency",
            "seconds",
            "200 responses",
            "throughput (req/s)",
            "vs sequential",
            "p50 (ms)",
            "p99 (ms)",
            "statuses",
            "peak RSS (MiB)",
        ],
        rows,
        align="rrrrrrrlr",
    )


def target_text(results: list[LoadResult], sequential: float) -> str:
    """The issue's concurrency-4 target against the measured ratio ("" when not measured)."""
    four = next((r for r in results if r.concurrency == 4), None)
    return (
        f"Issue target: throughput at concurrency 4 >= 1.7x the sequential rate on 2 cores: "
        f"measured {four.throughput / sequential:.2f}x "
        f"({'met' if four.throughput / sequential >= 1.7 else 'NOT met'})."
        if four is not None and sequential
        else ""
    )


def run(duration_s: float, levels: tuple[int, ...], quick: bool) -> str:
    machine = machine_description()
    header = [
        "## HTTP service under bounded loopback load",
        "",
        f"Command: `{command_line('bench.bench_service')}`",
        "",
    ]
    if quick:
        header.insert(2, "**--quick smoke run: not a result.**\n")
    if not (REPO_ROOT / "app" / "main.py").is_file():
        return "\n".join([*header, "Skipped: app/main.py is not there yet."]) + "\n"
    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp_dir:
        tmp = Path(tmp_dir)
        store, name, model_text = prepare_store(tmp)
        image_bytes, size = request_image()
        measured = serve_and_measure(tmp, store, name, image_bytes, levels, duration_s)
    if isinstance(measured, str):
        return "\n".join([*header, measured]) + "\n"
    results = measured.results
    sequential = results[0].throughput if results and results[0].concurrency == 1 else 0.0
    lines = [
        *header,
        f"Model: {model_text}; served by `uvicorn app.main:app` (one process, the service's "
        f"default settings, `DEVICE=cpu`), ready after {measured.ready_s:.1f} s "
        f"(`/readyz` model: {measured.ready.get('model')}). Each request posts the same "
        f"generated shapes image ({size}, JPEG, {len(image_bytes) / 1024:.0f} KiB) to `/detect` "
        f"(JSON, default options, `PROPOSAL_CACHE_SIZE=0`, so selective search runs on every "
        f"request); {duration_s:.0f} s per "
        "concurrency level after 2 warm-up requests, over loopback from one asyncio `httpx` "
        "client in this process. Latency percentiles are over the 200 responses.",
        "",
        results_table(results, sequential),
        target_text(results, sequential),
        "",
        f"Memory: {measured.idle_rss:.0f} MiB resident when ready (before any request); peak "
        f"{measured.overall_peak:.0f} MiB under load (VmRSS of the server process and its "
        "children, sampled every 100 ms).",
        "",
        "The client shares the 2 cores with the server (and with whatever else runs, see the "
        "load average); on an idle machine the server has more of them.",
    ]
    return render_section(lines, machine)


def main(argv: list[str] | None = None) -> None:
    args = parse_options(
        __doc__, argv, SizeOption("--duration", full=20.0, quick=3.0, what="seconds per level")
    )
    levels = (1, 4) if args.quick else CONCURRENCY
    report(SECTION, run(args.duration, levels, args.quick), args.write)


if __name__ == "__main__":
    main()
