"""OpenCV's selective search in "fast" mode, split into independent jobs that run on a process
pool: the same boxes as one monolithic call, in an order that is reproducible.

What OpenCV does (opencv_contrib ``modules/ximgproc/src/selectivesearchsegmentation.cpp``):
``switchToSelectiveSearchFast(base_k=150, inc_k=150, sigma=0.8f)`` converts the BGR base image
to HSV and to Lab (``cvtColor``), adds three graph segmentations (k = 150, 300, 450, sigma
``0.8f``, the other settings at their defaults) and two strategies, ``Multiple(colour, fill,
texture, size)`` (weights 0.25) and ``Multiple(fill, texture, size)`` (weights 0.3333).
``process()`` loops image -> segmentation -> strategy, runs one hierarchical grouping per
combination (12 in all), gives every region the rank ``rand() / RAND_MAX * level``, sorts the
regions of all groupings by rank and keeps the first occurrence of each rectangle. The groupings
use no randomness; only the order does, through the C library's ``rand()``, never seeded, so the
order (and any cap taken from it) changes from call to call while the set of boxes does not.

Jobs. :func:`fast_mode_jobs` lists the groupings in ``process()``'s order. By default a job is
one colour conversion x one segmentation with both strategies (6 jobs): the graph segmentation,
about half of the cost, is then computed once per pair as in the monolithic call, and the total
work equals the monolithic call's. ``split_strategies=True`` gives the 12 one-strategy jobs
(each recomputes its segmentation). A job builds fresh OpenCV objects (the colour and texture
strategies cache their histograms per image id) and converts the colour itself with the same
``cvtColor`` call, so its regions are exactly those of the same groupings in the monolithic
call, and the union over the jobs is exactly the monolithic call's set of boxes.

Reproducibility. Inside a job OpenCV still ranks with ``rand()``. Right before ``process()`` the
job seeds the C library with ``srand(1)`` (the state of a C program that never called
``srand``), holding a module lock, so a job's order is a fixed function of the image and the
job. The lock serialises the jobs of one process; in the pool's worker processes nothing else
calls ``rand()``. Code that runs OpenCV's selective search (or anything else that calls
``rand()``) in another thread of the same process at the same time as the in-process path
(``workers=0``) would break that; the process pool path is immune.

Merge order and cap. Job ``j`` returns its ``n_j`` unique rectangles in its seeded rank order;
the rectangle at position ``i`` gets the key ``(i + 0.5) / n_j``, its quantile in the job's
order. All rectangles are sorted by (key, job index), the first occurrence of each rectangle is
kept, and the cap (``max_proposals``) keeps the first boxes of that order. This mirrors the
monolithic sort by rank: at any depth every job contributes in proportion to its size, and low
hierarchy levels, which ``rank = U * level`` favours, come first within each job. The order
depends only on the image and the job list, never on the number of workers or on which job
finishes first.

Boxes are float32 ``[x1, y1, x2, y2]`` in the image's pixel frame, 0-based inclusive pixel
extents: OpenCV's ``(x, y, w, h)`` becomes ``[x, y, x + w - 1, y + h - 1]`` (the convention of
:func:`app.data.proposals.propose` at scale 1).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

ColorSpace = Literal["hsv", "lab"]
ChannelOrder = Literal["rgb", "bgr"]

#: OpenCV's strategy combinations in ``switchToSelectiveSearchFast``, in its order.
STRATEGY_COLOR_FILL_TEXTURE_SIZE = "color+fill+texture+size"
STRATEGY_FILL_TEXTURE_SIZE = "fill+texture+size"
FAST_MODE_STRATEGIES: tuple[str, ...] = (
    STRATEGY_COLOR_FILL_TEXTURE_SIZE,
    STRATEGY_FILL_TEXTURE_SIZE,
)
FAST_MODE_COLOR_SPACES: tuple[ColorSpace, ...] = ("hsv", "lab")
DEFAULT_MAX_PROPOSALS = 2000
#: The seed given to ``srand`` before each job's ``process()``: a fresh C program's state.
RAND_SEED = 1

_COLOR_CODES: dict[str, int] = {"hsv": cv2.COLOR_BGR2HSV, "lab": cv2.COLOR_BGR2Lab}
_RAND_LOCK = threading.Lock()
_libc: ctypes.CDLL | None = None


@dataclass(frozen=True)
class SearchJob:
    """One unit of work: a colour conversion, a graph segmentation and its groupings.

    Attributes:
        color_space: ``"hsv"`` or ``"lab"``, converted from BGR with ``cv2.cvtColor``.
        k: the graph segmentation's ``k`` (larger: fewer, larger segments).
        sigma: the Gaussian smoothing of the segmentation (px), a float32 value as OpenCV's.
        strategies: the groupings run on this segmentation, names from
            :data:`FAST_MODE_STRATEGIES`, in OpenCV's order.
    """

    color_space: ColorSpace
    k: float
    sigma: float
    strategies: tuple[str, ...]


def fast_mode_jobs(
    *,
    split_strategies: bool = False,
    base_k: int = 150,
    inc_k: int = 150,
    sigma: float = 0.8,
) -> tuple[SearchJob, ...]:
    """The jobs of ``switchToSelectiveSearchFast(base_k, inc_k, sigma)``, in ``process()``'s
    order (colour space, then k, then strategy).

    Args:
        split_strategies: one job per strategy (12 jobs) instead of one per colour space and
            segmentation (6 jobs, the segmentation computed once).
        base_k, inc_k: the segmentations use ``k = base_k, base_k + inc_k, base_k + 2 inc_k``.
        sigma: the segmentations' sigma; rounded to float32 as OpenCV's ``float`` argument is.
    """
    sigma32 = float(np.float32(sigma))
    groups = [(s,) for s in FAST_MODE_STRATEGIES] if split_strategies else [FAST_MODE_STRATEGIES]
    return tuple(
        SearchJob(
            color_space=space, k=float(base_k + step * inc_k), sigma=sigma32, strategies=group
        )
        for space in FAST_MODE_COLOR_SPACES
        for step in range(3)
        for group in groups
    )


def _strategy(name: str) -> cv2.ximgproc.segmentation.SelectiveSearchSegmentationStrategy:
    """A fresh OpenCV strategy object for one of :data:`FAST_MODE_STRATEGIES`."""
    seg = cv2.ximgproc.segmentation
    parts = [
        seg.createSelectiveSearchSegmentationStrategyFill(),
        seg.createSelectiveSearchSegmentationStrategyTexture(),
        seg.createSelectiveSearchSegmentationStrategySize(),
    ]
    if name == STRATEGY_COLOR_FILL_TEXTURE_SIZE:
        parts.insert(0, seg.createSelectiveSearchSegmentationStrategyColor())
    elif name != STRATEGY_FILL_TEXTURE_SIZE:
        raise ValueError(f"expected a strategy in {FAST_MODE_STRATEGIES}, got {name!r}")
    return seg.createSelectiveSearchSegmentationStrategyMultiple(*parts)


def _seed_c_rand(seed: int) -> None:
    """``srand(seed)`` in the C library OpenCV's ``rand()`` calls go to."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None)  # the process's global symbols, libc's srand among them
    _libc.srand(ctypes.c_uint(seed))


def job_rects(image_bgr: np.ndarray, job: SearchJob) -> np.ndarray:
    """Run one job with OpenCV (the pool's unit of work; no input checks).

    Args:
        image_bgr (ndarray[H, W, 3] uint8): the image, BGR, H, W >= 1.
        job: the job.

    Returns:
        ndarray[N, 4] int32: unique rectangles ``(x, y, w, h)`` in the job's seeded rank order.
    """
    search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    search.addImage(cv2.cvtColor(image_bgr, _COLOR_CODES[job.color_space]))
    segmentation = cv2.ximgproc.segmentation.createGraphSegmentation()
    segmentation.setK(job.k)
    segmentation.setSigma(job.sigma)
    search.addGraphSegmentation(segmentation)
    for name in job.strategies:
        search.addStrategy(_strategy(name))
    with _RAND_LOCK:
        _seed_c_rand(RAND_SEED)
        rects = search.process()
    return np.asarray(rects, dtype=np.int32).reshape(-1, 4)


def boxes_from_rects(rects: np.ndarray) -> np.ndarray:
    """OpenCV rectangles to boxes.

    Args:
        rects (ndarray[N, 4] int): ``(x, y, w, h)``, w, h >= 1.

    Returns:
        ndarray[N, 4] float32: ``[x, y, x + w - 1, y + h - 1]``, inclusive pixel extents.
    """
    rects = np.asarray(rects, dtype=np.int64).reshape(-1, 4)
    boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:] - 1], axis=1)
    return boxes.astype(np.float32)


def _as_bgr(image: np.ndarray, channel_order: ChannelOrder) -> np.ndarray:
    """A contiguous BGR copy (or view) of ``image`` after checking its type and shape."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"expected an image of shape [H, W, 3], got {getattr(image, 'shape', type(image))}"
        )
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if channel_order not in ("rgb", "bgr"):
        raise ValueError(f"expected channel_order 'rgb' or 'bgr', got {channel_order!r}")
    return np.ascontiguousarray(image[:, :, ::-1] if channel_order == "rgb" else image)


def run_job(
    image: np.ndarray, job: SearchJob, *, channel_order: ChannelOrder = "rgb"
) -> np.ndarray:
    """The boxes of one job, in its seeded rank order.

    Args:
        image (ndarray[H, W, 3] uint8): the image, channels in ``channel_order``.
        job: one of :func:`fast_mode_jobs`.

    Returns:
        ndarray[N, 4] float32: unique boxes ``[x1, y1, x2, y2]``, inclusive pixel extents;
        ``[0, 4]`` for an empty image.
    """
    bgr = _as_bgr(image, channel_order)
    if bgr.shape[0] == 0 or bgr.shape[1] == 0:
        return np.zeros((0, 4), dtype=np.float32)
    return boxes_from_rects(job_rects(bgr, job))


def merge_job_rects(per_job: Sequence[np.ndarray], max_proposals: int | None) -> np.ndarray:
    """Merge the jobs' rectangles in the module's deterministic order, drop repeats, cap.

    Rectangle ``i`` of job ``j`` (of ``n_j``) gets the key ``(i + 0.5) / n_j``; rectangles are
    ordered by (key, j), the first occurrence of each is kept, then the first
    ``max_proposals`` (all when ``None``).

    Args:
        per_job: per job, ndarray[n_j, 4] int ``(x, y, w, h)`` in the job's order, in job order.
        max_proposals: the cap, >= 0, or ``None`` for no cap.

    Returns:
        ndarray[N, 4] int32: the merged unique rectangles, N <= ``max_proposals``.
    """
    if max_proposals is not None and max_proposals < 0:
        raise ValueError(f"expected max_proposals >= 0 or None, got {max_proposals}")
    parts = [np.asarray(r, dtype=np.int32).reshape(-1, 4) for r in per_job]
    if not parts or sum(len(r) for r in parts) == 0:
        return np.zeros((0, 4), dtype=np.int32)
    rects = np.concatenate(parts)
    quantile = np.concatenate([(np.arange(len(r)) + 0.5) / len(r) for r in parts])
    job = np.concatenate([np.full(len(r), j) for j, r in enumerate(parts)])
    order = np.lexsort((job, quantile))  # by quantile, ties by job index
    rects = rects[order]
    _, first = np.unique(rects, axis=0, return_index=True)
    rects = rects[np.sort(first)]
    return rects if max_proposals is None else rects[:max_proposals]


def _init_worker() -> None:
    """Pool worker set-up: one OpenCV thread per worker (the pool is the parallelism)."""
    cv2.setNumThreads(1)


def create_pool(workers: int | None = None) -> ProcessPoolExecutor:
    """A process pool for :func:`selective_search_parallel`, to share between calls.

    Workers start through a fork server where the platform has one (safe in a threaded
    process such as the service), else by spawning; each sets OpenCV to one thread.

    Args:
        workers: number of processes, >= 1; the usable cores when ``None``.
    """
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    if workers < 1:
        raise ValueError(f"expected workers >= 1, got {workers}")
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker)


def _run_jobs(
    bgr: np.ndarray, jobs: Sequence[SearchJob], pool: Executor | None
) -> list[np.ndarray]:
    """Every job's rectangles, in job order; in this process when ``pool`` is ``None``."""
    if pool is None:
        return [job_rects(bgr, job) for job in jobs]
    # Submit the costliest first (small k: more segments to group); results keep job order.
    by_cost = sorted(range(len(jobs)), key=lambda j: (jobs[j].k, j))
    futures = {j: pool.submit(job_rects, bgr, jobs[j]) for j in by_cost}
    return [futures[j].result() for j in range(len(jobs))]


def selective_search_parallel(
    image: np.ndarray,
    *,
    workers: int | Executor = 0,
    max_proposals: int | None = DEFAULT_MAX_PROPOSALS,
    channel_order: ChannelOrder = "rgb",
    split_strategies: bool = False,
) -> np.ndarray:
    """Selective search (OpenCV's fast mode) as parallel jobs, merged deterministically.

    Before the cap the boxes equal, as a set, those of one monolithic OpenCV call;
    the order is the module's merge order (module docstring), the same for any ``workers``.

    Args:
        image (ndarray[H, W, 3] uint8): the image, channels in ``channel_order``; selective
            search runs at this size (downscaling is the caller's).
        workers: an executor to run the jobs on (a process pool, e.g. :func:`create_pool`,
            shared between calls; a thread pool gives the same answer without the speed-up),
            0 to run them in this process, or N >= 1 for a pool of N processes made for
            this call alone (its start-up included).
        max_proposals: keep at most this many boxes (>= 0); ``None`` keeps all.
        channel_order: ``"rgb"`` (the service's images) or ``"bgr"`` (OpenCV's).
        split_strategies: 12 one-strategy jobs instead of 6 (same set, another order).

    Returns:
        ndarray[N, 4] float32: unique boxes ``[x1, y1, x2, y2]``, inclusive pixel extents, in
        merge order, N <= ``max_proposals``; ``[0, 4]`` for an empty image.
    """
    bgr = _as_bgr(image, channel_order)
    if max_proposals is not None and max_proposals < 0:
        raise ValueError(f"expected max_proposals >= 0 or None, got {max_proposals}")
    if bgr.shape[0] == 0 or bgr.shape[1] == 0:
        return np.zeros((0, 4), dtype=np.float32)
    jobs = fast_mode_jobs(split_strategies=split_strategies)
    if isinstance(workers, Executor):
        per_job = _run_jobs(bgr, jobs, workers)
    elif workers == 0:
        per_job = _run_jobs(bgr, jobs, None)
    elif workers >= 1:
        with create_pool(workers) as pool:
            per_job = _run_jobs(bgr, jobs, pool)
    else:
        raise ValueError(f"expected workers >= 0 or an Executor, got {workers!r}")
    return boxes_from_rects(merge_job_rects(per_job, max_proposals))
