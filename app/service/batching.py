"""The inference worker: one per device, fed by a bounded queue, running micro-batches.

Requests (a decoded image plus, for detection, its proposals) are put on an ``asyncio.Queue``
of ``queue_size``; a full queue refuses at once (:class:`Overloaded`, HTTP 503). One asyncio
task takes the first waiting request, then whatever else arrives within ``batch_wait_s`` (up to
``max_batch_size``), and runs the whole batch in ONE ``Detector.detect`` call (all windows of
all images through fc6/fc7/SVM together) and one ``Detector.classify`` call, on a single
dedicated thread, so the event loop never blocks and the device sees one caller.

Failures stay with the request that caused them: when a batch of several fails, each request
is retried alone; an out-of-memory error (CUDA or host) frees the allocator cache and answers
:class:`InferenceOutOfMemory` (503) for that request only, so the next one runs normally.
A request whose deadline passes while it waits is answered :class:`DeadlineExceeded` (504)
and never reaches the device.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar, get_args

import numpy as np
import torch

from app.inference.detector import DetectionResult, DetectOptions, Detector, Prediction, ViewMode
from app.service.metrics import ServiceMetrics

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Overloaded(Exception):
    """The service holds as many requests as it may; retry later (HTTP 503 + Retry-After)."""


class ShuttingDown(Exception):
    """The worker is draining for shutdown and takes no new requests (HTTP 503)."""


class DeadlineExceeded(Exception):
    """The request's deadline passed before it was answered (HTTP 504)."""


class InferenceOutOfMemory(Exception):
    """The device (or host) ran out of memory on this request (HTTP 503)."""


class InferenceFailed(Exception):
    """The detector raised on this request alone (HTTP 500); the cause is chained."""


@dataclass(frozen=True)
class InferenceOutcome(Generic[T]):
    """A request's result with where its time went."""

    value: T
    queue_ms: float
    """From entering the queue to the start of its batch."""
    inference_ms: float
    """Wall time of the batch's detector call(s) on the inference thread."""
    batch_size: int


@dataclass(eq=False)
class _Job:
    kind: Literal["detect", "classify"]
    image: np.ndarray
    deadline: float  # event-loop clock
    future: asyncio.Future[InferenceOutcome[Any]]
    proposals: np.ndarray | None = None
    options: DetectOptions | None = None
    top_k: int = 5
    views: ViewMode = "full"
    enqueued: float = field(default_factory=time.perf_counter)


def is_out_of_memory(exc: BaseException) -> bool:
    """True for host ``MemoryError`` and torch's (CUDA) ``OutOfMemoryError``."""
    return isinstance(exc, MemoryError | torch.OutOfMemoryError)


class AdmissionGate:
    """Counts the model requests the service holds (waiting or running), at most ``capacity``.

    Taking a slot never waits: when none is free, :meth:`acquire` raises :class:`Overloaded`.
    """

    def __init__(self, capacity: int, metrics: ServiceMetrics | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"expected a capacity >= 1, got {capacity}")
        self.capacity = capacity
        self.held = 0
        self._metrics = metrics

    @contextlib.contextmanager
    def slot(self) -> Any:
        """Hold one slot for the ``with`` block; raises :class:`Overloaded` when full."""
        if self.held >= self.capacity:
            raise Overloaded(f"{self.held} requests in progress (limit {self.capacity})")
        self.held += 1
        self._report()
        try:
            yield
        finally:
            self.held -= 1
            self._report()

    def _report(self) -> None:
        if self._metrics is not None:
            self._metrics.admitted.set(self.held)


class InferenceWorker:
    """Runs one :class:`Detector` on its device for many concurrent requests."""

    def __init__(
        self,
        detector: Detector,
        *,
        queue_size: int,
        max_batch_size: int = 8,
        batch_wait_s: float = 0.005,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.detector = detector
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_s
        self._metrics = metrics
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=queue_size)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def queue_depth(self) -> int:
        """Requests waiting for a batch."""
        return self._queue.qsize()

    def start(self) -> None:
        """Start the worker task on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="inference")

    async def stop(self, timeout_s: float | None = None) -> None:
        """Refuse new requests, finish every queued one (up to ``timeout_s``), then stop."""
        self._closing = True
        if self._task is not None:
            try:
                await asyncio.wait_for(self._queue.join(), timeout_s)
            except TimeoutError:
                logger.warning("inference queue not drained within %.1f s", timeout_s or 0.0)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while not self._queue.empty():  # anything left after a timed-out drain
            job = self._queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(ShuttingDown("the service is shutting down"))
        self._executor.shutdown(wait=True)

    async def detect(
        self, image: np.ndarray, proposals: np.ndarray, options: DetectOptions, *, deadline: float
    ) -> InferenceOutcome[DetectionResult]:
        """Detect in one image as part of the next batch.

        Args:
            image (ndarray[H, W, 3] uint8): RGB image.
            proposals (ndarray[N, 4] float32): its windows.
            deadline: on the event loop's clock (``loop.time()``).
        """
        loop = asyncio.get_running_loop()
        job = _Job(
            "detect", image, deadline, loop.create_future(), proposals=proposals, options=options
        )
        return await self._submit(job)

    async def classify(
        self,
        image: np.ndarray,
        top_k: int,
        *,
        deadline: float,
        views: ViewMode = "full",
        proposals: np.ndarray | None = None,
    ) -> InferenceOutcome[list[Prediction]]:
        """Classify one image as part of the next batch; ``top_k`` classes, best first
        (``proposals``: its windows, needed by ``views="detect"``)."""
        loop = asyncio.get_running_loop()
        job = _Job(
            "classify",
            image,
            deadline,
            loop.create_future(),
            proposals=proposals,
            top_k=top_k,
            views=views,
        )
        return await self._submit(job)

    async def _submit(self, job: _Job) -> InferenceOutcome[Any]:
        if self._closing or self._task is None:
            raise ShuttingDown("the service is shutting down")
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            raise Overloaded(f"inference queue full ({self._queue.maxsize} waiting)") from None
        self._report_depth()
        remaining = job.deadline - asyncio.get_running_loop().time()
        try:
            return await asyncio.wait_for(job.future, max(remaining, 0.0))
        except TimeoutError:
            raise DeadlineExceeded("deadline passed while waiting for inference") from None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            batch_deadline = loop.time() + self.batch_wait_s
            while len(batch) < self.max_batch_size:
                wait = batch_deadline - loop.time()
                try:
                    if wait > 0:
                        batch.append(await asyncio.wait_for(self._queue.get(), wait))
                    else:
                        batch.append(self._queue.get_nowait())
                except (TimeoutError, asyncio.QueueEmpty):
                    break
            self._report_depth()
            try:
                live = []
                now = loop.time()
                for job in batch:
                    if job.future.done():  # the caller gave up (timeout or disconnect)
                        continue
                    if now >= job.deadline:
                        job.future.set_exception(DeadlineExceeded("deadline passed in the queue"))
                        continue
                    live.append(job)
                if live:
                    await self._execute(live)
            except Exception:  # never let one batch kill the worker
                logger.exception("inference batch failed unexpectedly")
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(InferenceFailed("inference failed"))
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _execute(self, jobs: list[_Job]) -> None:
        """Run ``jobs`` as one batch; on failure of a multi-request batch, one at a time."""
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        if self._metrics is not None:
            self._metrics.batch_size.observe(len(jobs))
        try:
            values, inference_ms = await loop.run_in_executor(self._executor, self._infer, jobs)
        except Exception as exc:
            if len(jobs) > 1:
                logger.warning("batch of %d failed (%r); retrying one by one", len(jobs), exc)
                for job in jobs:
                    await self._execute([job])
                return
            self._fail(jobs[0], exc)
            return
        for job, value in zip(jobs, values, strict=True):
            if not job.future.done():
                queue_ms = (started - job.enqueued) * 1000.0
                job.future.set_result(InferenceOutcome(value, queue_ms, inference_ms, len(jobs)))

    def _fail(self, job: _Job, exc: Exception) -> None:
        if job.future.done():
            return
        if is_out_of_memory(exc):
            logger.error("out of memory during inference: %s", exc)
            if self._metrics is not None:
                self._metrics.rejected.labels(reason="out_of_memory").inc()
            job.future.set_exception(InferenceOutOfMemory("out of memory during inference"))
        else:
            logger.error("inference failed", exc_info=exc)
            failure = InferenceFailed("inference failed")
            failure.__cause__ = exc
            job.future.set_exception(failure)

    def _infer(self, jobs: Sequence[_Job]) -> tuple[list[Any], float]:
        """On the inference thread: one ``detect`` call for the batch, one ``classify`` call
        per view mode."""
        started = time.perf_counter()
        values: dict[int, Any] = {}
        try:
            detect_jobs = [(i, job) for i, job in enumerate(jobs) if job.kind == "detect"]
            if detect_jobs:
                results = self.detector.detect(
                    [job.image for _, job in detect_jobs],
                    [job.proposals for _, job in detect_jobs if job.proposals is not None],
                    [job.options or DetectOptions() for _, job in detect_jobs],
                )
                values.update(
                    (i, result) for (i, _), result in zip(detect_jobs, results, strict=True)
                )
            for views in get_args(ViewMode):
                classify_jobs = [
                    (i, job)
                    for i, job in enumerate(jobs)
                    if job.kind == "classify" and job.views == views
                ]
                if not classify_jobs:
                    continue
                top_k = max(job.top_k for _, job in classify_jobs)
                predictions = self.detector.classify(
                    [job.image for _, job in classify_jobs],
                    top_k=top_k,
                    views=views,
                    proposals=(
                        [job.proposals for _, job in classify_jobs if job.proposals is not None]
                        if views == "detect"
                        else None
                    ),
                )
                values.update(
                    (i, ranked[: job.top_k])
                    for (i, job), ranked in zip(classify_jobs, predictions, strict=True)
                )
        except BaseException as exc:
            if is_out_of_memory(exc) and torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise
        return [values[i] for i in range(len(jobs))], (time.perf_counter() - started) * 1000.0

    def _report_depth(self) -> None:
        if self._metrics is not None:
            self._metrics.queue_depth.set(self._queue.qsize())
