"""The proposals of one request: supplied by the client, read from the LRU cache, or found by
selective search with its jobs on the service's shared process pool.

Selective search (:mod:`app.data.proposals`, :mod:`app.data.selective_search`) of a request:

1. in the CPU thread pool: the SHA-256 cache key of the decoded pixels (when the cache is on);
   a hit answers at once with the first ``cap`` boxes of the stored list (source ``cache``);
2. in the CPU thread pool: the downscaled BGR copy;
3. on the process pool (``PROPOSAL_WORKERS`` processes, made when the engine is built in the
   app's lifespan, shared by every request in flight, shut down on exit): the six jobs, the
   costliest first, awaited without blocking the event loop until the request's deadline
   (past it the jobs not yet started are cancelled and the request answers 504);
4. in the CPU thread pool: merge in the fixed order, map back, filter; the uncapped list goes
   into the cache and the first ``cap`` boxes to the request (source ``selective_search``).

The result is the one :func:`app.data.proposals.propose` gives in-process, byte for byte, so
the same image gets the same detections in any process, with any number of workers.
A worker that dies (killed for memory) breaks the pool; it is replaced and the request's jobs
run once more on the new one.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Literal, TypeVar

import numpy as np

from app.data.proposal_lru import ProposalLru, proposal_lru_key
from app.data.proposals import (
    SearchImage,
    boxes_in_original_frame,
    cap_proposals,
    proposal_cap,
    search_boxes,
    search_image,
)
from app.data.selective_search import (
    boxes_from_rects,
    create_pool,
    fast_mode_jobs,
    job_rects,
    merge_job_rects,
)
from app.model.config import ProposalConfig
from app.service.batching import DeadlineExceeded, InferenceFailed
from app.service.metrics import ServiceMetrics

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: Where a request's windows came from.
ProposalsSource = Literal["selective_search", "client", "cache"]
#: ``searcher(image_rgb, config) -> ndarray[N, 4] float32``: every proposal of the image in
#: order, before the cap (as :func:`app.data.proposals.search_boxes`); tests and benchmarks
#: pass one to replace the process pool.
Searcher = Callable[[np.ndarray, ProposalConfig], np.ndarray]


async def await_until(deadline: float, awaitable: Awaitable[T], stage: str) -> T:
    """``awaitable``'s result, or :class:`DeadlineExceeded` once the event loop's clock passes
    ``deadline`` (the awaitable is then cancelled)."""
    remaining = max(deadline - asyncio.get_running_loop().time(), 0.0)
    try:
        return await asyncio.wait_for(awaitable, remaining)
    except TimeoutError:
        raise DeadlineExceeded(f"deadline passed during {stage}") from None


def _merged_boxes(
    search: SearchImage, per_job: list[np.ndarray], config: ProposalConfig
) -> np.ndarray:
    """The jobs' rectangles (per job, ndarray[n_j, 4] int32 ``(x, y, w, h)`` of the copy) ->
    the uncapped proposals, ndarray[N, 4] float32 in the original frame."""
    boxes = boxes_from_rects(merge_job_rects(per_job, None))
    return boxes_in_original_frame(search, boxes, config)


def preload_selective_search() -> None:
    """Have the fork server import selective search, OpenCV and NumPy, so each worker it forks
    has them already (instead of about 0.2 s of imports a worker).

    A process-wide setting (the default list, ``__main__``, plus that module), read when the
    fork server starts: with this process's first fork-server pool; no effect after that, or
    where there is no fork server. Each worker still imports the parent's main module itself:
    cheap under uvicorn or pytest, seconds under a script that imports torch.
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["__main__", "app.data.selective_search"])


class ProposalStage:
    """Selective search for the service: the LRU cache, the process pool, the CPU threads.

    One stage serves every loaded model: ``propose`` takes the requesting model's settings
    (the cache key includes them), so models share the pool, the threads and the cache.

    Args:
        config: the proposal settings used when a call names none (and by the warm-up).
        workers: processes of the pool (``PROPOSAL_WORKERS``).
        cache_size: entries of the LRU cache (``PROPOSAL_CACHE_SIZE``, 0: off).
        cpu: the thread pool for hashing, downscaling and merging.
        metrics: cache hits and misses, proposals by source.
        searcher: replaces the process pool when given (no pool is made then).
    """

    def __init__(
        self,
        config: ProposalConfig,
        *,
        workers: int,
        cache_size: int,
        cpu: Executor,
        metrics: ServiceMetrics,
        searcher: Searcher | None = None,
    ) -> None:
        self.config = config
        self.workers = workers
        self.cache = ProposalLru(cache_size)
        self.cpu = cpu
        self.metrics = metrics
        self.searcher = searcher
        self.pool: ProcessPoolExecutor | None = None
        if searcher is None:
            preload_selective_search()
            self.pool = create_pool(workers)

    async def _in_cpu(self, deadline: float, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.cpu, functools.partial(fn, *args))
        return await await_until(deadline, future, "proposals")

    async def propose(
        self,
        image: np.ndarray,
        *,
        max_proposals: int | None,
        deadline: float,
        config: ProposalConfig | None = None,
    ) -> tuple[np.ndarray, ProposalsSource]:
        """The proposals of ``image`` (ndarray[H, W, 3] uint8 RGB) at the request's cap, with
        the model's ``config`` (default: the stage's).

        Returns:
            ``(ndarray[N, 4] float32, source)``: boxes as :func:`app.data.proposals.propose`
            gives them, from ``"cache"`` or ``"selective_search"``.
        """
        config = self.config if config is None else config
        cap = proposal_cap(config, max_proposals)
        key = None
        if self.cache.capacity > 0:
            key = await self._in_cpu(deadline, proposal_lru_key, image, config)
            cached = self.cache.get(key, cap)
            if cached is not None:
                self.metrics.proposal_cache_hits.inc()
                return cached, "cache"
            self.metrics.proposal_cache_misses.inc()
        boxes = await self._search(image, config, deadline)
        if key is not None:
            self.cache.put(key, boxes)
            self.metrics.proposal_cache_entries.set(len(self.cache))
        return cap_proposals(boxes, config, cap), "selective_search"

    async def _search(
        self, image: np.ndarray, config: ProposalConfig, deadline: float
    ) -> np.ndarray:
        """Every proposal of ``image`` before the cap (steps 2 to 4 of the module docstring)."""
        if self.searcher is not None:
            return await self._in_cpu(deadline, self.searcher, image, config)
        search = await self._in_cpu(deadline, search_image, image, config)
        pool = self.pool
        assert pool is not None
        try:
            per_job = await self._run_jobs(pool, search.bgr, deadline)
        except BrokenProcessPool:
            logger.error("a selective-search worker died; replacing the process pool")
            pool = self._replace_pool(pool)
            try:
                per_job = await self._run_jobs(pool, search.bgr, deadline)
            except BrokenProcessPool as exc:
                raise InferenceFailed("selective-search workers keep dying") from exc
        return await self._in_cpu(deadline, _merged_boxes, search, per_job, config)

    @staticmethod
    async def _run_jobs(
        pool: ProcessPoolExecutor, bgr: np.ndarray, deadline: float
    ) -> list[np.ndarray]:
        """The six jobs' rectangles in job order, run on ``pool``, costliest first."""
        jobs = fast_mode_jobs()
        by_cost = sorted(range(len(jobs)), key=lambda j: (jobs[j].k, j))
        futures = {j: asyncio.wrap_future(pool.submit(job_rects, bgr, jobs[j])) for j in by_cost}
        await await_until(deadline, asyncio.gather(*futures.values()), "selective search")
        return [futures[j].result() for j in range(len(jobs))]

    def _replace_pool(self, broken: ProcessPoolExecutor) -> ProcessPoolExecutor:
        """A working pool in place of ``broken`` (already replaced by a concurrent request:
        that one's replacement)."""
        if self.pool is broken:
            self.pool = create_pool(self.workers)
            broken.shutdown(wait=False, cancel_futures=True)
        assert self.pool is not None
        return self.pool

    def warm_up(self) -> None:
        """Blocking: one search on a small image, which starts the pool's workers."""
        rng = np.random.default_rng(0)
        image = rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
        if self.searcher is not None:
            self.searcher(image, self.config)
        else:
            search_boxes(image, self.config, workers=self.pool)  # type: ignore[arg-type]

    def shutdown(self) -> None:
        """Blocking: stop the pool's workers (queued jobs are cancelled)."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
