"""Benchmark: forward + backward of ``roi_spp`` for training, the argmax Function vs autograd
through the plain torch path.

Side by side in one run, on CPU float32 maps of 43 x 57 cells (conv5 of a 688 x 912 image,
stride 16), levels (1, 2, 3, 6), 2 torch threads:

* ``Function``: ``roi_spp`` on a map that requires grad, i.e. ``_spp_autograd.RoISppFunction``
  (compiled forward that records each max's cell, compiled scatter backward);
* ``torch autograd``: ``_spp_torch.roi_spp_torch`` (sparse tables, ``amax``) differentiated by
  autograd, the path ``roi_spp`` took for maps that need gradients before the Function.

Cases: the width-0.25 ZF-5 conv5 (64 channels) with 128 and 512 windows, and a 256-channel
map (full-width ZF-5) with 128 and 512 windows. Each variant's call is: forward, then
``pooled.backward(g)`` with a fixed random ``g``; forward and backward are timed apart and
together (per round: the median of 3 calls of the Function, one call of the torch path). The
ratios (torch autograd / Function, total time) are measured in interleaved rounds, the order
rotating from round to round; the table gives median [min - max] over the rounds, so a load
that comes and goes shows as spread. Before timing, the script checks that both variants give
the same pooled values and the same gradients (the maps hold distinct values, a random
permutation, so no bin has a tie; a float32 ``randn`` map of 600k values has a few, where
``amax`` splits the gradient and the Function does not). Windows are selective-search-like
(``bench.common.random_windows``) projected with ``project_windows``.
A warm-up call comes first (numba compiles or loads its cache).

    .venv/bin/python -m bench.bench_spp_backward [--quick] [--rounds N] [--write [BENCHMARKS.md]]
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from app.ops._spp_layout import pyramid_layout
from app.ops._spp_torch import roi_spp_torch
from app.ops.spp import DEFAULT_LEVELS, project_windows, roi_spp
from bench.common import (
    SizeOption,
    command_line,
    fmt_ms,
    log,
    machine_description,
    markdown_table,
    parse_options,
    random_windows,
    render_section,
    report,
    setup_threads,
)

SECTION = "bench_spp_backward"
MAP_HEIGHT, MAP_WIDTH = 43, 57
IMAGE_HEIGHT, IMAGE_WIDTH = 16 * MAP_HEIGHT, 16 * MAP_WIDTH
#: (label, channels, windows)
CASES = [
    ("ZF-5 w0.25 conv5", 64, 128),
    ("ZF-5 w0.25 conv5", 64, 512),
    ("256-channel conv5", 256, 128),
    ("256-channel conv5", 256, 512),
]
QUICK_CASES = [("ZF-5 w0.25 conv5", 64, 128)]
#: Calls of the fast variant per round (its median counts): a short call is easily hit by a
#: load spike on a shared 2-core machine; the slow variant's single call averages over it.
FUNCTION_CALLS_PER_ROUND = 3

Pool = Callable[[Tensor, Tensor], Tensor]


@dataclass
class Timing:
    """Per-round times (ms) of one variant."""

    forward: list[float] = field(default_factory=list)
    backward: list[float] = field(default_factory=list)

    @property
    def total(self) -> list[float]:
        return [f + b for f, b in zip(self.forward, self.backward, strict=True)]


def function_pool(features: Tensor, regions: Tensor) -> Tensor:
    return roi_spp(features, regions)  # features require grad: RoISppFunction


def torch_pool(features: Tensor, regions: Tensor) -> Tensor:
    return roi_spp_torch(features, regions, pyramid_layout(DEFAULT_LEVELS))


def forward_backward(pool: Pool, features: Tensor, regions: Tensor, grad: Tensor) -> Timing:
    """One call: forward and backward of ``pool``, timed apart."""
    leaf = features.detach().requires_grad_()
    start = time.perf_counter()
    pooled = pool(leaf, regions)
    middle = time.perf_counter()
    pooled.backward(grad)
    end = time.perf_counter()
    return Timing(forward=[(middle - start) * 1e3], backward=[(end - middle) * 1e3])


def check_variants(features: Tensor, regions: Tensor, grad: Tensor) -> None:
    """Same pooled values and (tie-free map) the same gradients from both variants."""
    results = []
    for pool in (function_pool, torch_pool):
        leaf = features.detach().clone().requires_grad_()
        pooled = pool(leaf, regions)
        pooled.backward(grad)
        results.append((pooled.detach(), leaf.grad))
    (fast, fast_grad), (slow, slow_grad) = results
    if not torch.equal(fast, slow):
        raise AssertionError("the Function and the torch path pool different values")
    # a cell sums the gradients of up to hundreds of outputs, in another order: rounding only
    torch.testing.assert_close(fast_grad, slow_grad, rtol=1e-5, atol=1e-4)


def case_inputs(channels: int, windows: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(features [1, C, 43, 57], regions [K, 5], output gradient [K, C * 50])``."""
    gen = torch.Generator().manual_seed(seed)
    shape = (1, channels, MAP_HEIGHT, MAP_WIDTH)
    count = channels * MAP_HEIGHT * MAP_WIDTH  # distinct values: no ties (randn has some)
    features = (torch.randperm(count, generator=gen).float() / count - 0.5).reshape(shape)
    boxes = torch.from_numpy(random_windows(windows, IMAGE_HEIGHT, IMAGE_WIDTH, seed=seed))
    cells = project_windows(boxes, (MAP_HEIGHT, MAP_WIDTH))
    regions = torch.cat([torch.zeros(windows, 1, dtype=torch.int64), cells], dim=1)
    grad = torch.randn(windows, channels * sum(n * n for n in DEFAULT_LEVELS), generator=gen)
    return features, regions, grad


def measure_case(channels: int, windows: int, rounds: int) -> tuple[Timing, Timing]:
    """Interleaved rounds of both variants: ``(Function, torch autograd)`` times."""
    features, regions, grad = case_inputs(channels, windows, seed=channels + windows)
    check_variants(features, regions, grad)
    timings = {function_pool: Timing(), torch_pool: Timing()}
    calls = {function_pool: FUNCTION_CALLS_PER_ROUND, torch_pool: 1}
    pools = list(timings)
    for index in range(rounds):
        shift = index % len(pools)
        for pool in pools[shift:] + pools[:shift]:
            tries = [forward_backward(pool, features, regions, grad) for _ in range(calls[pool])]
            one = sorted(tries, key=lambda t: t.total[0])[len(tries) // 2]  # the median call
            timings[pool].forward += one.forward
            timings[pool].backward += one.backward
    return timings[function_pool], timings[torch_pool]


def spread(values: list[float]) -> str:
    """``median [min - max]`` of ratios."""
    return f"{statistics.median(values):.1f}x [{min(values):.1f} - {max(values):.1f}]"


def median_ms(values: list[float]) -> str:
    return fmt_ms(statistics.median(values))


def run(quick: bool, rounds: int) -> str:
    setup_threads()
    warm_features, warm_regions, warm_grad = case_inputs(8, 4, seed=0)
    start = time.perf_counter()
    forward_backward(function_pool, warm_features, warm_regions, warm_grad)
    first_call_ms = (time.perf_counter() - start) * 1e3
    machine = machine_description()
    rows = []
    for label, channels, windows in QUICK_CASES if quick else CASES:
        fast, slow = measure_case(channels, windows, rounds)
        ratios = [s / f for s, f in zip(slow.total, fast.total, strict=True)]
        rows.append(
            [
                f"{label}, {channels} ch",
                windows,
                rounds,
                spread(ratios),
                f"{median_ms(fast.total)} ({median_ms(fast.forward)} + {median_ms(fast.backward)})",
                f"{median_ms(slow.total)} ({median_ms(slow.forward)} + {median_ms(slow.backward)})",
            ]
        )
        log(f"  {channels} channels, {windows} windows done")
    headers = ["map", "windows", "rounds", "torch autograd / Function", "Function ms", "torch ms"]
    lines = [
        "## roi_spp backward: argmax Function vs autograd through the torch path",
        "",
        f"Command: `{command_line('bench.bench_spp_backward')}`",
        "",
        f"CPU float32 maps 43 x 57 (conv5 of a {IMAGE_HEIGHT} x {IMAGE_WIDTH} image), levels"
        " (1, 2, 3, 6), selective-search-like windows; forward then backward of a random output"
        " gradient. Ratio of total times per interleaved round, median [min - max]; times are"
        " medians over the rounds: total (forward + backward, each its own median); per round"
        " the Function's time is the median of 3 calls, the torch path's one call. Pooled"
        " values checked equal and gradients checked close before timing.",
        "",
        markdown_table(headers, rows),
        f"First call in the process (numba compile or cache load): {first_call_ms:.0f} ms,"
        " excluded above.",
    ]
    return render_section(lines, machine, quick=quick)


def main(argv: list[str] | None = None) -> None:
    args = parse_options(
        __doc__, argv, SizeOption("--rounds", full=7, quick=2, what="interleaved rounds")
    )
    report(SECTION, run(args.quick, args.rounds), args.write)


if __name__ == "__main__":
    main()
