"""Benchmark: selective search's recall and cost against the longest side it runs at, and
several images in parallel.

Over N generated shapes test images (seed 123, a temporary directory), for each longest side
in (300, 400, 500, full size): ``app.data.proposals.propose`` (OpenCV selective search, fast mode,
at most 2000 proposals) timed per image, and proposal recall of the non-difficult ground truth
at IoU 0.5 and 0.7 (``app.evaluation.recall.proposal_recall``). The settings are interleaved
image by image, so a change of machine load hits all of them alike. The recommended side is the
cheapest whose recall at both thresholds is within one point of full size.

Cap order at the default setting: the first ``cap`` proposals (after the min-size filter and
the mapping back, as the service keeps them) in the parallel search's merge order
(``propose``) and in one monolithic OpenCV call's own random order (``propose_monolithic``,
mean over 3 calls), recall at caps 100, 300, 1000, 2000.

Parallelism at the default setting: the same images sequentially in this process, through a
pool of 2 threads (what the service does: OpenCV releases the GIL) and through a pool of 2
processes (pool start-up excluded): throughput ratios against sequential.

    .venv/bin/python -m bench.bench_proposals [--quick] [--images N] [--write [BENCHMARKS.md]]
"""

from __future__ import annotations

import multiprocessing as mp
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from app.data.proposals import propose, search_boxes
from app.evaluation.recall import proposal_recall
from app.model.config import ProposalConfig
from bench.common import (
    BenchImage,
    SizeOption,
    command_line,
    generated_images,
    log,
    machine_description,
    markdown_table,
    parse_options,
    render_section,
    report,
    setup_threads,
)
from tests.references.selective_search import search_boxes_monolithic

SECTION = "bench_proposals"
SIDES = (300, 400, 500, 0)  # 0 = full size
WORKERS = 2
CAPS = (100, 300, 1000, 2000)
MONO_CALLS = 3


@dataclass
class SideResult:
    side: int
    seconds: list[float] = field(default_factory=list)
    proposals: list[np.ndarray] = field(default_factory=list)
    recall: dict[float, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return "full" if self.side == 0 else str(self.side)


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)


def _propose_default(image: np.ndarray) -> int:
    return len(propose(image, ProposalConfig()))


def _throughput(images: list[np.ndarray], pool: Executor | None) -> float:
    """Images per second, sequentially (``pool=None``) or through ``pool``."""
    start = time.perf_counter()
    if pool is None:
        for image in images:
            _propose_default(image)
    else:
        list(pool.map(_propose_default, images))
    return len(images) / (time.perf_counter() - start)


def cap_order_table(images: list[np.ndarray], gt: list[np.ndarray], mono_calls: int) -> str:
    """Recall at each cap: the parallel merge order vs the monolithic call's own order."""
    config = ProposalConfig()
    merged = [search_boxes(image, config) for image in images]
    monos = [
        [search_boxes_monolithic(image, config) for image in images] for _ in range(mono_calls)
    ]
    rows = []
    for cap in CAPS:
        row = [str(cap)]
        mono = [proposal_recall([b[:cap] for b in m], gt, (0.5, 0.7)).recall for m in monos]
        ours = proposal_recall([b[:cap] for b in merged], gt, (0.5, 0.7)).recall
        for t in (0.5, 0.7):
            row += [f"{np.mean([r[t] for r in mono]):.3f}", f"{ours[t]:.3f}"]
        rows.append(row)
    sizes = f"{np.mean([len(b) for b in merged]):.0f}"
    table = markdown_table(
        ["cap", "monolithic @0.5", "merge @0.5", "monolithic @0.7", "merge @0.7"], rows
    )
    return f"{sizes} proposals per image before the cap.\n\n{table}"


def time_sides(images: list[BenchImage]) -> dict[int, SideResult]:
    """``propose`` at every longest side of :data:`SIDES`, interleaved image by image."""
    results = {side: SideResult(side) for side in SIDES}
    propose(images[0].rgb)  # warm-up
    for index, image in enumerate(images):
        for side in SIDES:
            config = ProposalConfig(max_side=side)
            start = time.perf_counter()
            boxes = propose(image.rgb, config)
            results[side].seconds.append(time.perf_counter() - start)
            results[side].proposals.append(boxes)
        log(f"  image {index + 1}/{len(images)}")
    return results


@dataclass
class Throughputs:
    """Images per second of ``propose`` over a batch: in this process and on pools."""

    images: int
    sequential: float
    sequential_one: float  # OpenCV limited to 1 thread
    threaded: float
    processes: float


def parallel_throughputs(batch: list[np.ndarray]) -> Throughputs:
    """Several images at once: sequentially (OpenCV 2 and 1 threads), on threads, on processes."""
    log(f"parallel: {len(batch)} images")
    sequential = _throughput(batch, None)
    import cv2

    cv2.setNumThreads(1)
    sequential_one = _throughput(batch, None)
    cv2.setNumThreads(WORKERS)
    with ThreadPoolExecutor(WORKERS) as threads:
        list(threads.map(_propose_default, batch[:WORKERS]))  # warm-up
        threaded = _throughput(batch, threads)
    context = mp.get_context("spawn")
    with ProcessPoolExecutor(WORKERS, mp_context=context, initializer=_init_worker) as procs:
        list(procs.map(_propose_default, batch[:WORKERS]))  # start-up and imports
        processes = _throughput(batch, procs)
    return Throughputs(len(batch), sequential, sequential_one, threaded, processes)


def sides_table(results: dict[int, SideResult]) -> str:
    """Recall, proposal count and time per longest side."""
    full = results[0]
    rows = []
    for result in results.values():
        rows.append(
            [
                result.label,
                f"{result.recall[0.5]:.3f}",
                f"{result.recall[0.7]:.3f}",
                f"{np.mean([len(p) for p in result.proposals]):.0f}",
                f"{np.mean(result.seconds):.3f}",
                f"{np.median(result.seconds):.3f}",
                f"{np.mean(result.seconds) / np.mean(full.seconds):.2f}",
            ]
        )
    return markdown_table(
        [
            "longest side",
            "recall @0.5",
            "recall @0.7",
            "proposals/image",
            "s/image (mean)",
            "s/image (median)",
            "time vs full",
        ],
        rows,
    )


def best_side_text(results: dict[int, SideResult]) -> str:
    """The cheapest side within one recall point of full size, against the default."""
    full = results[0]
    within = [
        r for r in results.values() if all(r.recall[t] >= full.recall[t] - 0.01 for t in (0.5, 0.7))
    ]
    best = min(within, key=lambda r: np.mean(r.seconds))
    default_side = ProposalConfig().max_side
    verdict = (
        "confirms the default"
        if best.side == default_side
        else f"suggests {best.label} instead of the default {default_side}"
    )
    return (
        f"Cheapest side within one point of full size at both IoU 0.5 and 0.7: **{best.label}**;"
        f" this {verdict} (`ProposalConfig.max_side` = {default_side})."
    )


def throughput_table(measured: Throughputs) -> str:
    """Images per second of each mode and its ratio to the sequential run."""
    sequential = measured.sequential
    return markdown_table(
        ["mode", "images/s", "vs sequential"],
        [
            ["sequential (this process, OpenCV 2 threads)", f"{sequential:.2f}", "1.00x"],
            [
                "sequential (this process, OpenCV 1 thread)",
                f"{measured.sequential_one:.2f}",
                f"{measured.sequential_one / sequential:.2f}x",
            ],
            [
                f"{WORKERS} threads",
                f"{measured.threaded:.2f}",
                f"**{measured.threaded / sequential:.2f}x**",
            ],
            [
                f"{WORKERS} processes",
                f"{measured.processes:.2f}",
                f"**{measured.processes / sequential:.2f}x**",
            ],
        ],
    )


def run(count: int, parallel_count: int, quick: bool) -> str:
    setup_threads()
    machine = machine_description()
    log(f"generating {count} images")
    with generated_images(count) as images:
        results = time_sides(images)
        gt = [image.gt_boxes for image in images]
        log("cap order: merge order vs monolithic order")
        cap_order = cap_order_table([i.rgb for i in images], gt, 1 if quick else MONO_CALLS)
        for result in results.values():
            recall = proposal_recall(result.proposals, gt, (0.5, 0.7))
            result.recall = dict(recall.recall)
        num_gt = sum(len(g) for g in gt)
        sizes = [max(image.rgb.shape[:2]) for image in images]
        parallel = parallel_throughputs([image.rgb for image in images[:parallel_count]])
    lines = [
        "## Proposals: selective search recall and cost vs longest side; parallel images",
        "",
        f"Command: `{command_line('bench.bench_proposals')}`",
        "",
        f"{count} generated shapes test images (seed 123, longest side {min(sizes)} to "
        f"{max(sizes)} px), {num_gt} non-difficult ground-truth boxes. `propose` with "
        "`ProposalConfig(max_side=...)` (fast mode, at most 2000 proposals, boxes mapped back to "
        "the full image); recall = fraction of ground-truth boxes whose best proposal has "
        "IoU >= t. Settings interleaved image by image. An image whose longest side is already "
        "at most the setting runs at full size, so 500 and full differ only on images "
        "longer than 500 px.",
        "",
        sides_table(results),
        best_side_text(results),
        "",
        f"Cap order at the default settings (max side {ProposalConfig().max_side}, min size "
        f"{ProposalConfig().min_size:g}): recall of the first `cap` proposals in the parallel "
        "search's merge order (`propose`, reproducible) and in one monolithic OpenCV call's "
        f"own random order (mean of {1 if quick else MONO_CALLS} calls; the order the service "
        "used before). " + cap_order,
        "",
        f"Several images at once ({parallel.images} images at the default side, pool start-up "
        "excluded; each pool worker runs OpenCV with 1 thread, the sequential run with 2):",
        "",
        throughput_table(parallel),
        "The two sequential rows show how much selective search itself uses a second core; "
        "the pools can only gain what the other job on the machine leaves free (see the load "
        "average below), so on a busy machine their ratio understates an idle one.",
    ]
    return render_section(lines, machine, quick=quick)


def main(argv: list[str] | None = None) -> None:
    args = parse_options(__doc__, argv, SizeOption("--images", full=30, quick=3, what="images"))
    count = args.images
    parallel_count = min(count, 4 if args.quick else 12)
    report(SECTION, run(count, parallel_count, args.quick), args.write)


if __name__ == "__main__":
    main()
