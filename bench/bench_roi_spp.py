"""Benchmark: exact ``roi_spp`` vs ``torchvision.ops.roi_pool`` per level vs the reference loop.

All in one run, on one conv5-sized map (43 x 58 x 256 float32, the map of a 688 x 917 image at
scale 688) and the same windows, at 500, 2000 and 8000 windows, with 2 torch threads:

* ``roi_spp out=``: the public op writing into a caller's buffer, reused call after call (on the
  CPU: the compiled numba loop, nothing allocated);
* ``roi_spp new``: the public op allocating its output on every call (100 MiB at 2000 windows,
  whose first-touch page faults are part of the time);
* ``roi_pool x 4``: ``torchvision.ops.roi_pool`` called once per level on the same integer
  cells (``spatial_scale=1``), each ``[K, C, n, n]`` output flattened and concatenated, which
  is exactly the docs/model.md §2 layout; the script checks all outputs are equal, so the
  comparison is like for like;
* ``torch fallback``: ``roi_spp``'s plain-torch path (used without numba, or for NaN maps);
* ``reference``: ``roi_spp_reference`` run on a sample of the windows and extrapolated
  linearly (its cost is per window), checked equal to ``roi_spp`` on that sample.

The ratios are measured in interleaved rounds: each round times ``roi_spp out=`` and
``roi_spp new`` (median of 3 calls each) and one ``roi_pool x 4`` call, in an order that
rotates from round to round, and gives one ratio per variant; the table reports the median and
the smallest and largest ratio over the rounds, with the 1-minute load average seen during them.
A load that comes and goes therefore shows as spread rather than hiding in one number;
``--busy N`` adds N busy-looping processes for the timed part, to measure under a known load.

Windows mimic selective search at scale 688: the square root of the area log-uniform in
[12, 917] px, aspect ratio log-uniform in [1/3, 3], position uniform in the image; projected to
conv5 cells with ``project_windows``. One warm-up call comes first (it compiles or loads the
numba cache; its time is reported separately).

    .venv/bin/python -m bench.bench_roi_spp [--write BENCHMARKS.md] [--rounds 7] [--busy 0]

(from the repository root: the reference loop is imported from ``tests/references``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import Tensor
from torchvision.ops import roi_pool

from app.ops.spp import DEFAULT_LEVELS, project_windows, roi_spp
from tests.references.roi_spp import roi_spp_reference

START_MARKER = "<!-- bench_roi_spp:start -->"
END_MARKER = "<!-- bench_roi_spp:end -->"
IMAGE_HEIGHT, IMAGE_WIDTH = 688, 917  # a 480 x 640 image at scale 688
MAP_CHANNELS, MAP_HEIGHT, MAP_WIDTH = 256, 43, 58  # its ZF-5 conv5 map (stride 16)
WINDOW_COUNTS = (500, 2000, 8000)
REFERENCE_SAMPLE = 100
SPP_CALLS_PER_ROUND = 3
THREADS = 2
#: The bar roi_spp must hold against roi_pool x 4 (median ratio of the rounds).
RATIO_BAR = 10.0


@dataclass
class Row:
    """One window count: per-round times (ms) and the 1-minute load average per round."""

    windows: int
    mean_cells: float
    out_ms: list[float] = field(default_factory=list)
    new_ms: list[float] = field(default_factory=list)
    roi_pool_ms: list[float] = field(default_factory=list)
    load: list[float] = field(default_factory=list)
    torch_ms: float = 0.0
    reference_ms: float = 0.0  # extrapolated

    def ratios(self, spp_ms: list[float]) -> list[float]:
        """``roi_pool / roi_spp`` per round."""
        return [pool / spp for pool, spp in zip(self.roi_pool_ms, spp_ms, strict=True)]


def selective_search_like_boxes(count: int, rng: np.random.Generator) -> Tensor:
    """``count`` random windows ``[K, 4]`` (x1, y1, x2, y2) inside a 688 x 917 image."""
    side = np.exp(rng.uniform(np.log(12.0), np.log(IMAGE_WIDTH), count))
    aspect = np.exp(rng.uniform(np.log(1 / 3), np.log(3.0), count))
    width = np.minimum(side * np.sqrt(aspect), IMAGE_WIDTH - 1)
    height = np.minimum(side / np.sqrt(aspect), IMAGE_HEIGHT - 1)
    x1 = rng.uniform(0, IMAGE_WIDTH - 1 - width)
    y1 = rng.uniform(0, IMAGE_HEIGHT - 1 - height)
    return torch.tensor(np.stack([x1, y1, x1 + width, y1 + height], axis=1), dtype=torch.float32)


def roi_pool_per_level(features: Tensor, regions: Tensor) -> Tensor:
    """torchvision ``roi_pool`` once per level on integer cells, in the docs/model.md layout."""
    rois = regions.to(features.dtype)  # (batch_idx, x1, y1, x2, y2) = (b, left, top, right, bottom)
    pooled = [roi_pool(features, rois, (n, n), spatial_scale=1.0) for n in DEFAULT_LEVELS]
    return torch.cat([p.flatten(1) for p in pooled], dim=1)  # [K, C*n*n] per level


def torch_fallback(features: Tensor, regions: Tensor) -> Tensor:
    from app.ops._spp_layout import pyramid_layout
    from app.ops._spp_torch import roi_spp_torch

    return roi_spp_torch(features, regions, pyramid_layout(DEFAULT_LEVELS))


def call_ms(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    return statistics.median(call_ms(fn) for _ in range(repeats))


@contextlib.contextmanager
def busy_processes(count: int) -> Iterator[None]:
    """``count`` busy-looping Python processes for the duration of the block (a known load)."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def load_1min() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def machine_description() -> list[str]:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            names = [
                line.split(":", 1)[1].strip() for line in info if line.startswith("model name")
            ]
        if names:
            cpu = names[0]
    except OSError:
        pass
    import numba

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return [
        f"- CPU: {cpu}, {os.cpu_count()} logical cores visible, torch threads: "
        f"{torch.get_num_threads()} (numba follows torch; threading layer "
        f"{numba.threading_layer()})",
        f"- Python {platform.python_version()}, torch {torch.__version__}, torchvision "
        f"{torchvision.__version__}, numba {numba.__version__}, {platform.system()} "
        f"{platform.release()}",
        f"- load average (1, 5, 15 min) at the start: {load} (shared machine: other jobs may run)",
    ]


def measure_rounds(
    row: Row, features: Tensor, regions: Tensor, buffer: Tensor, rounds: int
) -> None:
    """Fill ``row``'s per-round times: roi_spp out=, roi_spp new and roi_pool x 4, interleaved."""
    variants: list[tuple[list[float], Callable[[], float]]] = [
        (row.out_ms, partial(median_ms, partial(roi_spp, features, regions, out=buffer), 3)),
        (row.new_ms, partial(median_ms, partial(roi_spp, features, regions), 3)),
        (row.roi_pool_ms, partial(call_ms, partial(roi_pool_per_level, features, regions))),
    ]
    for index in range(rounds):
        shift = index % len(variants)
        for times, measure in variants[shift:] + variants[:shift]:
            times.append(measure())
        row.load.append(load_1min())


def check_outputs(features: Tensor, regions: Tensor, buffer: Tensor) -> None:
    """All the timed variants give the same bits (and the reference on a sample)."""
    fast = roi_spp(features, regions)
    if roi_spp(features, regions, out=buffer) is not buffer or not torch.equal(buffer, fast):
        raise AssertionError("roi_spp with out= differs from roi_spp")
    if not torch.equal(fast, roi_pool_per_level(features, regions)):
        raise AssertionError("roi_spp and roi_pool per level disagree: not a fair comparison")
    sample = regions[:REFERENCE_SAMPLE]
    if not torch.equal(roi_spp_reference(features, sample), fast[:REFERENCE_SAMPLE]):
        raise AssertionError("roi_spp and roi_spp_reference disagree")


def run(rounds: int, busy: int, seed: int) -> tuple[list[Row], float, list[str]]:
    torch.set_num_threads(THREADS)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    features = torch.relu(torch.randn(1, MAP_CHANNELS, MAP_HEIGHT, MAP_WIDTH, generator=gen))
    warm = torch.zeros(1, 5, dtype=torch.int64)
    first_call_ms = call_ms(partial(roi_spp, features, warm))  # numba: compile or load cache
    machine = machine_description()
    rows = []
    for count in WINDOW_COUNTS:
        cells = project_windows(selective_search_like_boxes(count, rng), (MAP_HEIGHT, MAP_WIDTH))
        regions = torch.cat([torch.zeros(count, 1, dtype=torch.int64), cells], dim=1)
        sizes = (cells[:, 2] - cells[:, 0] + 1) * (cells[:, 3] - cells[:, 1] + 1)
        buffer = torch.empty(count, MAP_CHANNELS * sum(n * n for n in DEFAULT_LEVELS))
        check_outputs(features, regions, buffer)  # also first-touches the reused buffer
        row = Row(windows=count, mean_cells=float(sizes.float().mean()))
        with busy_processes(busy):
            measure_rounds(
                row, features, regions, buffer, rounds if count < 8000 else (rounds + 1) // 2
            )
        row.torch_ms = median_ms(
            partial(torch_fallback, features, regions), 1 if count >= 8000 else 2
        )
        sample = regions[:REFERENCE_SAMPLE]
        row.reference_ms = (
            call_ms(partial(roi_spp_reference, features, sample)) * count / len(sample)
        )
        rows.append(row)
        print(f"  {count} windows done", file=sys.stderr)
    return rows, first_call_ms, machine


def spread(values: list[float]) -> str:
    """``median [min - max]`` of ratios."""
    return f"{statistics.median(values):.1f}x [{min(values):.1f} - {max(values):.1f}]"


def render(
    rows: list[Row], first_call_ms: float, machine: list[str], command: str, busy: int
) -> str:
    load_note = f", plus {busy} busy-looping processes started by the script" if busy else ""
    lines = [
        "## roi_spp: fast CPU path vs torchvision roi_pool per level vs reference loop",
        "",
        f"Command: `{command}`",
        "",
        f"One {MAP_CHANNELS} x {MAP_HEIGHT} x {MAP_WIDTH} float32 map (conv5 of a 688 x 917 image),"
        " levels (1, 2, 3, 6) = 12800-d per window, selective-search-like windows"
        " (sqrt(area) log-uniform in [12, 917] px, aspect log-uniform in [1/3, 3]),"
        f" {THREADS} torch threads{load_note}. All outputs checked bit-identical"
        " (roi_pool per level on the same integer cells with spatial_scale=1 gives exactly the"
        " docs/model.md §2 layout once each level is flattened). `out=`: roi_spp writes into a"
        " buffer the caller reuses; `new`: roi_spp allocates its output (100 MiB at 2000 windows)"
        " on every call.",
        "",
        f"Ratios, roi_pool x4 / roi_spp, per interleaved round (median [min - max] over the"
        f" rounds; the bar is {RATIO_BAR:.0f}x):",
        "",
        "| windows | rounds | vs roi_spp out= | vs roi_spp new | 1-min load during the rounds |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.windows} | {len(row.roi_pool_ms)} | {spread(row.ratios(row.out_ms))}"
            f" | {spread(row.ratios(row.new_ms))}"
            f" | {min(row.load):.1f} - {max(row.load):.1f} |"
        )
    lines += [
        "",
        "Times (ms, median over the rounds; the torch fallback is the median of 1-2 calls, the"
        f" reference loop ran on {REFERENCE_SAMPLE} windows and is extrapolated linearly, ~):",
        "",
        "| windows | mean cells/window | roi_spp out= | roi_spp new | roi_pool x4"
        " | torch fallback | reference |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.windows} | {row.mean_cells:.0f} | {statistics.median(row.out_ms):.1f}"
            f" | {statistics.median(row.new_ms):.1f} | {statistics.median(row.roi_pool_ms):.0f}"
            f" | {row.torch_ms:.0f} | ~{row.reference_ms:.0f} |"
        )
    lines += [
        "",
        f"First call in the process (numba compile or on-disk cache load): {first_call_ms:.0f} ms,"
        " excluded above. The roi_spp times include input validation, the NaN check and the"
        " channels-last copy of the map; `new` also the first touch of its fresh output (page"
        " faults, slow and variable on a loaded VM), which `out=` avoids.",
        "",
        "Machine:",
        "",
        *machine,
    ]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    """Put ``section`` between this benchmark's markers in ``path`` (append when absent)."""
    block = f"{START_MARKER}\n{section}{END_MARKER}\n"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(START_MARKER) + r".*?" + re.escape(END_MARKER) + r"\n?", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write", type=Path, help="update this markdown file (e.g. BENCHMARKS.md)")
    parser.add_argument(
        "--rounds", type=int, default=7, help="interleaved rounds (half, rounded up, at 8000)"
    )
    parser.add_argument(
        "--busy", type=int, default=0, help="busy-looping processes to run while timing"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.busy < 0:
        parser.error("expected --rounds >= 1 and --busy >= 0")
    command = " ".join(["python -m bench.bench_roi_spp", *(sys.argv[1:] if argv is None else argv)])
    rows, first_call_ms, machine = run(args.rounds, args.busy, args.seed)
    section = render(rows, first_call_ms, machine, command, args.busy)
    print(section)
    if args.write:
        write_section(args.write, section)
        print(f"updated {args.write}", file=sys.stderr)


if __name__ == "__main__":
    main()
