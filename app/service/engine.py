"""The inference engine of one loaded detector: the CPU pool, the proposal stage (its process
pool and cache), the inference worker and the admission gate, and one model request stage by
stage: decode -> proposals -> inference worker -> (render).

CPU stages (decoding, hashing, downscaling, drawing) run in a bounded thread pool sized to
the cores: Pillow and OpenCV release the GIL in their C code, images need no pickling, and
uploads stay in this process's memory. Selective search's jobs run on the shared process pool
of :class:`~app.service.proposing.ProposalStage` (exact and reproducible; OpenCV runs it on one
thread per call, so only processes use the cores). The network runs on the single
:class:`~app.service.batching.InferenceWorker`. The event loop only awaits.

Every stage is timed into the request's ``timings`` dict (milliseconds) and bounded by the
request's deadline (:class:`~app.service.batching.DeadlineExceeded` past it). A CPU task that
outlives its deadline finishes in the background; its result is dropped.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
from fastapi import Request

from app.imaging import decode_image, encode_image
from app.inference.detector import DetectionResult, DetectOptions, Detector, Prediction, ViewMode
from app.inference.draw import draw_detections
from app.inference.timing import timed
from app.service.batching import AdmissionGate, InferenceOutcome, InferenceWorker
from app.service.metrics import ServiceMetrics
from app.service.proposing import ProposalStage, Searcher, await_until
from app.service.api_models import ProposalsSource
from app.service.settings import Settings

T = TypeVar("T")


def render_detections(image: np.ndarray, result: DetectionResult, image_format: str) -> bytes:
    """``image`` (``ndarray[H, W, 3] uint8`` RGB) with ``result``'s boxes drawn, encoded as
    ``image_format`` (png or jpeg)."""
    return encode_image(draw_detections(image, result.detections), image_format)


class InferenceEngine:
    """The CPU pool, the proposal stage, the inference worker and the admission gate of one
    loaded detector (``searcher``: see :class:`~app.service.proposing.ProposalStage`)."""

    def __init__(
        self,
        detector: Detector,
        settings: Settings,
        metrics: ServiceMetrics,
        searcher: Searcher | None = None,
    ) -> None:
        self.detector = detector
        self.settings = settings
        self.metrics = metrics
        self.gate = AdmissionGate(settings.queue_size, metrics)
        self.worker = InferenceWorker(
            detector,
            queue_size=settings.queue_size,
            max_batch_size=settings.max_batch_size,
            batch_wait_s=settings.batch_wait_ms / 1000.0,
            metrics=metrics,
        )
        self.cpu = ThreadPoolExecutor(settings.proposal_workers, thread_name_prefix="cpu")
        self.proposals = ProposalStage(
            detector.model.manifest.proposals,
            workers=settings.proposal_workers,
            cache_size=settings.proposal_cache_size,
            cpu=self.cpu,
            metrics=metrics,
            searcher=searcher,
        )

    def start(self) -> None:
        """Start the inference worker (on the running loop)."""
        self.worker.start()

    async def stop(self) -> None:
        """Finish queued work (up to the request timeout), then release the threads and the
        selective-search processes."""
        await self.worker.stop(timeout_s=self.settings.request_timeout_s)
        await asyncio.to_thread(self.close_pools)

    def close_pools(self) -> None:
        """Blocking: stop the selective-search processes and the CPU threads."""
        self.proposals.shutdown()
        self.cpu.shutdown(wait=True)

    def new_deadline(self, started_at: float | None = None) -> float:
        """The deadline (event-loop clock) of a request arriving now or at ``started_at``."""
        loop = asyncio.get_running_loop()
        start = loop.time() if started_at is None else started_at
        return start + self.settings.request_timeout_s

    def close_timings(self, timings: dict[str, float], started: float) -> None:
        """Close a model request's stage timings (ms): ``total`` since ``started``
        (``perf_counter``), then all of them observed by the stage metrics."""
        timings["total"] = round((time.perf_counter() - started) * 1000.0, 3)
        self.metrics.observe_stages(timings)

    def finish_timings(self, request: Request, timings: dict[str, float], started: float) -> None:
        """:meth:`close_timings`, and the timings kept on the request for the access log."""
        self.close_timings(timings, started)
        request.state.timings_ms = timings

    async def run_cpu(self, deadline: float, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in the CPU pool, awaited at most until ``deadline``."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.cpu, functools.partial(fn, *args, **kwargs))
        return await await_until(deadline, future, "CPU work")

    async def decode(
        self, data: bytes, *, deadline: float, timings: dict[str, float]
    ) -> np.ndarray:
        """Bytes -> ndarray[H, W, 3] uint8 RGB (raises ``ImageError``)."""
        with timed(timings, "decode"):
            return await self.run_cpu(
                deadline, decode_image, data, max_pixels=self.settings.max_pixels
            )

    async def propose(
        self,
        image: np.ndarray,
        *,
        max_proposals: int | None,
        deadline: float,
        timings: dict[str, float],
        supplied: np.ndarray | None = None,
    ) -> tuple[np.ndarray, ProposalsSource]:
        """The windows of ``image``: ``supplied`` (ndarray[N, 4], already validated) when given,
        else selective search at the model's settings (cached); with their source."""
        source: ProposalsSource
        with timed(timings, "proposals"):
            if supplied is not None:
                boxes, source = supplied, "client"
            else:
                boxes, source = await self.proposals.propose(
                    image, max_proposals=max_proposals, deadline=deadline
                )
        self.metrics.proposals.labels(source=source).inc()
        return boxes, source

    async def detect_windows(
        self,
        image: np.ndarray,
        proposals: np.ndarray,
        options: DetectOptions,
        *,
        deadline: float,
        timings: dict[str, float],
    ) -> InferenceOutcome[DetectionResult]:
        """The batched detector on ``image`` and its windows (ndarray[N, 4] float32)."""
        outcome = await self.worker.detect(image, proposals, options, deadline=deadline)
        timings["queue"] = round(outcome.queue_ms, 3)
        timings.update(outcome.value.timings_ms)
        timings["inference"] = round(outcome.inference_ms, 3)
        return outcome

    async def detect(
        self,
        image: np.ndarray,
        options: DetectOptions,
        *,
        max_proposals: int | None,
        deadline: float,
        timings: dict[str, float],
    ) -> InferenceOutcome[DetectionResult]:
        """Selective search (cached), then the batched detector."""
        proposals, _ = await self.propose(
            image, max_proposals=max_proposals, deadline=deadline, timings=timings
        )
        return await self.detect_windows(
            image, proposals, options, deadline=deadline, timings=timings
        )

    async def classify(
        self,
        image: np.ndarray,
        top_k: int,
        *,
        deadline: float,
        timings: dict[str, float],
        views: ViewMode = "full",
    ) -> InferenceOutcome[list[Prediction]]:
        """Whole-image classification through the batched detector (``views="detect"``:
        selective search first, cached, as for ``detect``)."""
        proposals = None
        if views == "detect":
            proposals, _ = await self.propose(
                image, max_proposals=None, deadline=deadline, timings=timings
            )
        outcome = await self.worker.classify(
            image, top_k, deadline=deadline, views=views, proposals=proposals
        )
        timings["queue"] = round(outcome.queue_ms, 3)
        timings["inference"] = round(outcome.inference_ms, 3)
        return outcome

    async def render(
        self,
        image: np.ndarray,
        result: DetectionResult,
        image_format: str,
        *,
        deadline: float,
        timings: dict[str, float],
    ) -> bytes:
        """The image with the boxes drawn, encoded as ``image_format`` (png or jpeg)."""
        with timed(timings, "render"):
            return await self.run_cpu(deadline, render_detections, image, result, image_format)

    def warm_up(self) -> None:
        """Blocking: one detector warm-up and one selective search on a small image (which
        starts the process pool's workers)."""
        self.detector.warm_up()
        self.proposals.warm_up()
