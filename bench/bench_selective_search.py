"""Benchmark: selective search as parallel jobs (``app.data.selective_search``) against one
monolithic OpenCV call, on real photos; and the recall of its capped merge order.

Per scikit-image photo (astronaut, coffee, chelsea, rocket, and motorcycle: the left view of
``stereo_motorcycle``), downscaled as the service does (longest side 500 px, ``INTER_AREA``):
median wall time over the repeats of

- the monolithic call (``switchToSelectiveSearchFast().process()``, this process, OpenCV with
  the benchmark's 2 threads),
- ``selective_search_parallel`` on process pools of 1, 2 and 4 workers (pools made and warmed
  before timing, as the service shares one; each worker runs OpenCV with 1 thread),
- each single job alone in this process with OpenCV on 1 thread: the slowest is what a host
  with a core per job would wait, the sum is the total work;

with the number of boxes of each (the sets are checked equal). The settings are interleaved
repeat by repeat, so a change of machine load hits all of them alike.

Recall of the cap: on generated shapes test images (seed 123, downscaled the same way), the
fraction of non-difficult ground-truth boxes whose best proposal has IoU >= 0.5 / 0.7 among
the first ``cap`` boxes, in the monolithic call's own (random) order (mean over 3 calls) and in
the parallel merge order.

    .venv/bin/python -m bench.bench_selective_search [--quick] [--repeats N] [--images N]
        [--write [BENCHMARKS.md]]
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from functools import partial

import cv2
import numpy as np

from app.data.selective_search import (
    create_pool,
    fast_mode_jobs,
    job_rects,
    selective_search_parallel,
)
from app.evaluation.recall import best_proposal_iou
from bench.common import (
    SizeOption,
    command_line,
    fmt_ms,
    generated_images,
    log,
    machine_description,
    markdown_table,
    parse_options,
    render_section,
    report,
    setup_threads,
)
from tests.references.selective_search import opencv_fast_selective_search

SECTION = "bench_selective_search"
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle")
MAX_SIDE = 500
QUICK_SIDE = 160  # --quick: photos and shapes images this small, so the smoke run stays short
WORKER_COUNTS = (1, 2, 4)
CAPS = (100, 300, 2000)
MONO_CALLS = 3


def downscale(image: np.ndarray, max_side: int = MAX_SIDE) -> tuple[np.ndarray, float]:
    """``image`` with its longest side at most ``max_side`` (as ``app.data.proposals``), and
    the factor original / small."""
    height, width = image.shape[:2]
    longest = max(height, width)
    if longest <= max_side:
        return image, 1.0
    factor = longest / max_side
    size = (max(1, round(width / factor)), max(1, round(height / factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), factor


def load_photo(name: str) -> np.ndarray:
    """A scikit-image photo, RGB uint8 ``[H, W, 3]`` (``motorcycle``: the stereo pair's left)."""
    from skimage import data

    if name == "motorcycle":
        return data.stereo_motorcycle()[0]
    return getattr(data, name)()


def _seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _job_seconds(bgr: np.ndarray) -> list[float]:
    """Wall time of each job alone in this process, OpenCV on 1 thread."""
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        return [_seconds(partial(job_rects, bgr, job)) for job in fast_mode_jobs()]
    finally:
        cv2.setNumThreads(threads)


def time_photo(
    name: str, rgb: np.ndarray, pools: dict[int, ProcessPoolExecutor], repeats: int
) -> list[str]:
    """One table row for a photo: sizes, counts, median times, ratios."""
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    times: dict[str, list[float]] = {key: [] for key in ["mono", *map(str, pools), "jobs"]}
    slowest: list[float] = []
    for _ in range(repeats):
        times["mono"].append(_seconds(lambda: opencv_fast_selective_search(rgb)))
        for workers, pool in pools.items():
            call = partial(selective_search_parallel, rgb, workers=pool, max_proposals=None)
            times[str(workers)].append(_seconds(call))
        jobs = _job_seconds(bgr)
        slowest.append(max(jobs))
        times["jobs"].append(sum(jobs))
    mono = opencv_fast_selective_search(rgb)
    merged = selective_search_parallel(rgb, workers=pools[min(pools)], max_proposals=None)
    same = {tuple(b) for b in mono.tolist()} == {tuple(b) for b in merged.tolist()}
    median = {key: statistics.median(values) for key, values in times.items()}
    cells = [fmt_ms(median[str(w)] * 1e3) for w in pools]
    two = median["mono"] / median["2"] if "2" in median else float("nan")
    return [
        name,
        f"{rgb.shape[1]}x{rgb.shape[0]}",
        f"{len(mono)}" + ("" if same else " (**sets differ**)"),
        f"{min(len(merged), 2000)}",
        fmt_ms(median["mono"] * 1e3),
        *cells,
        f"**{two:.2f}x**",
        fmt_ms(statistics.median(slowest) * 1e3),
        fmt_ms(median["jobs"] * 1e3),
    ]


def recall_rows(count: int, side: int = MAX_SIDE) -> tuple[list[list[str]], int, float]:
    """Recall at each cap, monolithic order vs merge order, over ``count`` shapes images."""
    hits: dict[tuple[str, int, float], list[bool]] = {}
    sizes = []
    with generated_images(count) as images:
        for image in images:
            small, factor = downscale(image.rgb, side)
            gt = image.gt_boxes / factor  # in the small image's frame
            merged = selective_search_parallel(small, workers=0, max_proposals=None)
            monos = [opencv_fast_selective_search(small) for _ in range(MONO_CALLS)]
            sizes.append(len(merged))
            for cap in CAPS:
                orders = {"merge": [merged[:cap]], "mono": [m[:cap] for m in monos]}
                for key, candidates in orders.items():
                    for boxes in candidates:
                        iou = best_proposal_iou(boxes, gt)
                        for t in (0.5, 0.7):
                            hits.setdefault((key, cap, t), []).extend((iou >= t).tolist())
    rows = []
    for cap in CAPS:
        row = [str(cap)]
        for key in ("mono", "merge"):
            row += [f"{np.mean(hits[(key, cap, t)]):.3f}" for t in (0.5, 0.7)]
        rows.append(row)
    num_gt = len(hits[("merge", CAPS[0], 0.5)])
    return rows, num_gt, float(np.mean(sizes))


def run(repeats: int, photos: tuple[str, ...], shapes: int, quick: bool) -> str:
    side = QUICK_SIDE if quick else MAX_SIDE
    # Each pool worker imports this script's modules (torch among them) once: seconds each.
    worker_counts = WORKER_COUNTS[:2] if quick else WORKER_COUNTS
    setup_threads()
    machine = machine_description()
    pools = {workers: create_pool(workers) for workers in worker_counts}
    rows = []
    try:
        warm = downscale(load_photo("astronaut"), 100)[0]
        for pool in pools.values():  # start the workers and import OpenCV there
            selective_search_parallel(warm, workers=pool)
        for name in photos:
            log(f"photo {name}")
            rgb = downscale(load_photo(name), side)[0]
            rows.append(time_photo(name, rgb, pools, repeats))
    finally:
        for pool in pools.values():
            pool.shutdown()
    log(f"recall on {shapes} shapes images")
    recall, num_gt, mean_boxes = recall_rows(shapes, side)
    headers = [
        "photo",
        "size",
        "boxes",
        "kept (cap 2000)",
        "monolithic ms",
        *[f"{w} worker{'s' if w > 1 else ''} ms" for w in worker_counts],
        "speed-up, 2 workers",
        "slowest job ms",
        "sum of jobs ms",
    ]
    jobs = len(fast_mode_jobs())
    lines = [
        "## Proposals: parallel, exact selective search vs one monolithic call",
        "",
        f"Command: `{command_line('bench.bench_selective_search')}`",
        "",
        f"scikit-image photos, longest side {side} px (`INTER_AREA`), median of {repeats} "
        f"interleaved repeats. `selective_search_parallel` runs OpenCV's fast mode as {jobs} "
        "jobs (colour space x segmentation k, both strategies) on a shared process pool (made "
        "and warmed before timing), merged in its deterministic order; `boxes` is the number "
        "of unique boxes (the parallel set is checked equal to the monolithic one). The "
        "slowest job bounds a host with a core per job; the sum of jobs is the total work. "
        "The machine may be shared with other jobs (load average below): the worker columns "
        "then get less than the cores they ask for, and their ratios understate an idle host.",
        "",
        markdown_table(headers, rows),
        f"Recall of the cap on {shapes} generated shapes test images ({num_gt} non-difficult "
        f"ground-truth boxes, {mean_boxes:.0f} boxes per image before the cap): the first "
        f"`cap` boxes in the monolithic call's own random order (mean of "
        f"{MONO_CALLS} calls) and in the parallel merge order.",
        "",
        markdown_table(
            ["cap", "monolithic @0.5", "monolithic @0.7", "merge @0.5", "merge @0.7"], recall
        ),
    ]
    return render_section(lines, machine, quick=quick)


def main(argv: list[str] | None = None) -> None:
    args = parse_options(
        __doc__,
        argv,
        SizeOption("--repeats", full=5, quick=1, what="repeats"),
        SizeOption("--images", full=20, quick=1, what="shapes images"),
    )
    photos = PHOTOS[:1] if args.quick else PHOTOS
    report(SECTION, run(args.repeats, photos, args.images, args.quick), args.write)


if __name__ == "__main__":
    main()
