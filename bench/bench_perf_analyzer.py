"""Benchmark: Triton's ``perf_analyzer`` against the service's v2 HTTP endpoint, next to
``bench_service``'s own client on ``/detect``, on one server.

Starts ``uvicorn app.main:app`` (the shipped ``zf5-shapes``, or ``bench_service``'s random
stand-in when it is absent; ``DEVICE=cpu``, ``GRPC_PORT=0``, ``PROPOSAL_CACHE_SIZE=0`` so that
selective search runs on every request although the image repeats), then at each concurrency
(1, 2, 4):

- ``perf_analyzer -i http`` on ``/v2/models/zf5-shapes/infer``: a real photograph
  (scikit-image's astronaut, 512 x 512, JPEG) as the ``IMAGE`` BYTES input, given in
  ``--input-data`` JSON as ``b64`` of the serialized tensor (4-byte little-endian length, then
  the file); binary tensors both ways; a fixed number of requests (8 per concurrent client);
- ``bench_service``'s asyncio ``httpx`` client posting the same JPEG to ``/detect`` (multipart)
  for a fixed duration.

``perf_analyzer`` comes from PyPI's ``perf-analyzer`` wheel (``bin/perf_analyzer`` inside it),
built for glibc 2.38 and GCC 13's libstdc++: ``--perf-analyzer`` takes the command to run it,
which ``bench/get_perf_analyzer.sh`` prints (through a newer glibc's dynamic loader where the
system's is older). When it cannot run, the section says why and the ``/detect`` rows are
still measured.

    .venv/bin/python -m bench.bench_perf_analyzer [--perf-analyzer CMD] [--quick] [--write]
    PA="$(bash bench/get_perf_analyzer.sh)"
    .venv/bin/python -m bench.bench_perf_analyzer --perf-analyzer "$PA" --write
"""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.bench_service import (
    READY_TIMEOUT_S,
    free_port,
    load,
    prepare_store,
    stop_server,
    wait_ready,
)
from bench.common import (
    REPO_ROOT,
    command_line,
    log,
    machine_description,
    markdown_table,
    parser_for,
    render_section,
    report,
)

SECTION = "bench_perf_analyzer"
CONCURRENCY = (1, 2, 4)
NOT_FOUND = (
    "no perf_analyzer on PATH nor in an installed perf-analyzer wheel (PyPI's real wheels are "
    "manylinux_2_38: on an older glibc pip picks the 0.1.0 placeholder, which has no binary)"
)


@dataclass
class Row:
    """One measurement: client, route, concurrency, and what it measured (``None``: failed)."""

    client: str
    route: str
    concurrency: int
    requests: int | None = None
    throughput: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    note: str = ""


def photo_jpeg() -> bytes:
    """scikit-image's astronaut (512 x 512 RGB photograph) as a JPEG, quality 90."""
    import skimage.data
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(skimage.data.astronaut()).save(out, format="JPEG", quality=90)
    return out.getvalue()


def input_data(image: bytes) -> dict[str, object]:
    """``--input-data`` JSON: ``IMAGE`` as ``b64`` of the serialized BYTES tensor (perf_analyzer
    sends ``b64`` content as the tensor's raw bytes)."""
    raw = len(image).to_bytes(4, "little") + image
    return {"data": [{"IMAGE": {"b64": base64.b64encode(raw).decode("ascii"), "shape": [1]}}]}


def default_perf_analyzer() -> list[str] | None:
    """``perf_analyzer`` on PATH, or the binary inside an installed ``perf_analyzer`` wheel."""
    found = shutil.which("perf_analyzer")
    if found:
        return [found]
    try:
        import perf_analyzer  # the PyPI wheel's package holds bin/perf_analyzer
    except ImportError:
        return None
    binary = Path(perf_analyzer.__file__).parent / "bin" / "perf_analyzer"
    return [str(binary)] if binary.is_file() else None


def probe(command: list[str]) -> tuple[str | None, str]:
    """``(None, version line)`` when ``command --version`` runs, else ``(reason, "")`` with
    its first error lines."""
    try:
        done = subprocess.run(
            [*command, "--version"], capture_output=True, text=True, timeout=60, check=False
        )
    except OSError as exc:
        return f"`{shlex.join(command)}` cannot start: {exc}", ""
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()[:3]
        reason = f"`{shlex.join(command)} --version` exited {done.returncode}: "
        return reason + " / ".join(lines), ""
    lines = (done.stdout + "\n" + done.stderr).strip().splitlines()
    return None, lines[0] if lines else "version unknown"


def perf_analyzer_args(
    model: str, url: str, data_path: Path, concurrency: int, quick: bool
) -> list[str]:
    """The arguments of one ``perf_analyzer`` run: ``concurrency`` warm-up requests, then a
    fixed number of them (8 per concurrent client; 2 with ``quick``) measured without its
    stability windows, which a CPU server at about one request a second on a shared machine
    rarely satisfies. Its CSV goes to ``<data_path>.c<N>.csv``."""
    count = (2 if quick else 8) * concurrency
    return [
        "-m", model, "-u", url, "-i", "http", "--input-data", str(data_path),
        "--concurrency-range", f"{concurrency}:{concurrency}",
        "--request-count", str(count), "--warmup-request-count", str(concurrency),
        "-f", f"{data_path}.c{concurrency}.csv",
    ]  # fmt: skip


def run_perf_analyzer(command: list[str], args: list[str], concurrency: int) -> Row:
    """One ``perf_analyzer`` run at ``concurrency``, read from its CSV and its report."""
    row = Row("perf_analyzer", "v2 infer", concurrency)
    done = subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=900, check=False
    )
    csv_path = Path(args[args.index("-f") + 1])
    if done.returncode != 0 or not csv_path.is_file():
        lines = [line for line in done.stdout.splitlines() if line.strip()][-2:]
        row.note = f"failed ({done.returncode}): " + " / ".join(lines + done.stderr.split("\n")[:1])
        return row
    with csv_path.open() as handle:
        (record,) = list(csv.DictReader(handle))
    counts = re.findall(r"Request count: (\d+)", done.stdout)
    row.requests = int(counts[-1]) if counts else None
    row.throughput = float(record["Inferences/Second"])
    row.p50_ms = float(record["p50 latency"]) / 1000.0  # microseconds
    row.p99_ms = float(record["p99 latency"]) / 1000.0
    return row


def run_bench_client(url: str, image: bytes, concurrency: int, duration_s: float) -> Row:
    """``bench_service``'s client on ``/detect`` for ``duration_s`` seconds."""
    result = asyncio.run(load(url, image, concurrency, duration_s))
    row = Row("bench_service client (httpx)", "/detect", concurrency, requests=result.ok)
    if result.ok:
        row.throughput = result.throughput
        row.p50_ms = result.percentile(0.5) * 1e3
        row.p99_ms = result.percentile(0.99) * 1e3
    others = {k: v for k, v in result.statuses.items() if k != "200"}
    row.note = ", ".join(f"{k}: {v}" for k, v in sorted(others.items()))
    return row


def fmt(value: float | int | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def table(rows: list[Row]) -> str:
    return markdown_table(
        ["concurrency", "client", "route", "requests", "throughput (req/s)", "p50 (ms)",
         "p99 (ms)", "note"],
        [
            [r.concurrency, r.client, r.route, fmt(r.requests), fmt(r.throughput, 2),
             fmt(r.p50_ms), fmt(r.p99_ms), r.note]
            for r in rows
        ],
        align="rllrrrrl",
    )  # fmt: skip


def measure(
    command: list[str] | None, tmp: Path, image: bytes, levels: tuple[int, ...], quick: bool
) -> tuple[list[Row], str, str]:
    """Start the server, measure every level with both clients; (rows, model text, the
    perf_analyzer command of the first level)."""
    store, name, model_text = prepare_store(tmp)
    data_path = tmp / "input.json"
    data_path.write_text(json.dumps(input_data(image)))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MODEL_NAME": name, "MODEL_STORE": str(store), "DEVICE": "cpu",
           "LOG_LEVEL": "WARNING", "GRPC_PORT": "0", "PROPOSAL_CACHE_SIZE": "0"}  # fmt: skip
    server = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1"]
    server += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
    rows: list[Row] = []
    shown = ""
    with (tmp / "server.log").open("wb") as server_log:
        process = subprocess.Popen(
            server, cwd=REPO_ROOT, env=env, stdout=server_log, stderr=subprocess.STDOUT
        )
        try:
            wait_ready(base, process, READY_TIMEOUT_S)
            asyncio.run(load(f"{base}/detect", image, 1, 0.01))  # warm-up
            for concurrency in levels:
                if command is not None:
                    url = f"127.0.0.1:{port}"
                    args = perf_analyzer_args(name, url, data_path, concurrency, quick)
                    shown = shown or shlex.join(["perf_analyzer", *args]).replace(f"{tmp}/", "")
                    log(f"perf_analyzer at concurrency {concurrency}")
                    rows.append(run_perf_analyzer(command, args, concurrency))
                log(f"bench_service client at concurrency {concurrency}")
                duration = 3.0 if quick else 20.0
                rows.append(run_bench_client(f"{base}/detect", image, concurrency, duration))
        finally:
            stop_server(process)
    return rows, model_text, shown


def run(command: list[str] | None, levels: tuple[int, ...], quick: bool, shown: str) -> str:
    machine = machine_description()
    header = [
        "## Open Inference Protocol under load: perf_analyzer on v2, next to bench_service",
        "",
        f"Command: `{shown}`",
        "",
    ]
    reason, version = probe(command) if command is not None else (NOT_FOUND, "")
    if reason is not None:
        command = None
    image = photo_jpeg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-perf-analyzer-") as tmp_dir:
        rows, model_text, one_level = measure(command, Path(tmp_dir), image, levels, quick)
    lines = [
        *header,
        f"Model: {model_text}; one `uvicorn app.main:app` process on loopback, `DEVICE=cpu`, "
        "`PROPOSAL_CACHE_SIZE=0` (selective search on every request), the other settings at "
        f"their defaults. Input: scikit-image's astronaut photograph, 512 x 512, JPEG "
        f"({len(image) / 1024:.0f} KiB), default detection options. perf_analyzer sends it as "
        "the `IMAGE` BYTES tensor in Triton's binary extension, 8 requests per concurrent "
        "client after one warm-up request each (`--request-count`, no stability windows). The "
        "`/detect` rows are `bench_service`'s client (multipart upload, 20 s per level) on the "
        "same server, measured right after.",
        "",
        table(rows).rstrip("\n"),
        "",
    ]
    if reason is not None:
        lines += [f"perf_analyzer did not run: {reason}.", ""]
    else:
        lines += [
            f"perf_analyzer: {version}, from PyPI's `perf-analyzer` wheel; its binary needs "
            "glibc 2.38 and GCC 13's libstdc++, so on an older system `bench/get_perf_analyzer.sh` "
            "fetches the wheel and Debian 13's libc6/libstdc++6 and prints the command that runs "
            "it through that glibc's loader (the `--perf-analyzer` argument above). One level's "
            f"arguments: `{one_level}`",
            "",
        ]
    load_1, load_5, _ = os.getloadavg()
    lines.append(
        f"Whole run: {time.perf_counter() - started:.0f} s; load average (1, 5 min) at its end: "
        f"{load_1:.2f}, {load_5:.2f}. With two cores, selective search (in its own worker "
        "processes) and the network share them with the clients and anything else running: "
        "above a load of about 2, higher concurrency buys queueing, not throughput."
    )
    return render_section(lines, machine, quick=quick)


def main(argv: list[str] | None = None) -> None:
    parser = parser_for(__doc__)
    parser.add_argument(
        "--perf-analyzer",
        default=None,
        metavar="CMD",
        help="command that runs perf_analyzer (split like a shell line); default: "
        "perf_analyzer on PATH or in the installed perf-analyzer wheel",
    )
    args = parser.parse_args(argv)
    command = shlex.split(args.perf_analyzer) if args.perf_analyzer else default_perf_analyzer()
    levels = (1, 2) if args.quick else CONCURRENCY
    flags = [*(["--quick"] if args.quick else []), *(["--write"] if args.write else [])]
    shown = command_line("bench.bench_perf_analyzer", flags)
    if args.perf_analyzer:  # the command that printed it, not this machine's paths
        shown = f'PA="$(bash bench/get_perf_analyzer.sh)"; {shown} --perf-analyzer "$PA"'
    report(SECTION, run(command, levels, args.quick, shown), args.write)


if __name__ == "__main__":
    main()
