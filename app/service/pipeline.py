"""One model request, stage by stage: decode -> proposals -> inference worker -> (render).

CPU stages (decoding, selective search, drawing) run in a bounded thread pool sized to the
cores: Pillow and OpenCV release the GIL in their C code, images need no pickling, and uploads
stay in this process's memory (a process pool would copy every image twice). The network runs
on the single :class:`~app.service.batching.InferenceWorker`. The event loop only awaits.

Every stage is timed into the request's ``timings`` dict (milliseconds) and bounded by the
request's deadline (:class:`~app.service.batching.DeadlineExceeded` past it). A CPU task that
outlives its deadline finishes in the background; its result is dropped.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
from fastapi import Request

from app.data.proposals import propose
from app.imaging import decode_image
from app.inference.detector import DetectionResult, DetectOptions, Detector, Prediction, ViewMode
from app.model.config import ProposalConfig
from app.service.batching import (
    AdmissionGate,
    DeadlineExceeded,
    InferenceOutcome,
    InferenceWorker,
)
from app.service.metrics import ServiceMetrics
from app.service.render import draw_detections
from app.service.settings import Settings

T = TypeVar("T")
#: ``propose(image_rgb, config, max_proposals) -> ndarray[N, 4] float32``
Proposer = Callable[[np.ndarray, ProposalConfig, int | None], np.ndarray]


@contextmanager
def timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    """Add the block's wall time (ms) to ``timings[stage]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        elapsed = (time.perf_counter() - start) * 1000.0
        timings[stage] = round(timings.get(stage, 0.0) + elapsed, 3)


class InferencePipeline:
    """The CPU pool, the inference worker and the admission gate of one loaded detector."""

    def __init__(
        self,
        detector: Detector,
        settings: Settings,
        metrics: ServiceMetrics,
        proposer: Proposer = propose,
    ) -> None:
        self.detector = detector
        self.settings = settings
        self.metrics = metrics
        self.proposer = proposer
        self.gate = AdmissionGate(settings.queue_size, metrics)
        self.worker = InferenceWorker(
            detector,
            queue_size=settings.queue_size,
            max_batch_size=settings.max_batch_size,
            batch_wait_s=settings.batch_wait_ms / 1000.0,
            metrics=metrics,
        )
        self.cpu = ThreadPoolExecutor(settings.proposal_workers, thread_name_prefix="cpu")

    def start(self) -> None:
        """Start the inference worker (on the running loop)."""
        self.worker.start()

    async def stop(self) -> None:
        """Finish queued work (up to the request timeout), then release the threads."""
        await self.worker.stop(timeout_s=self.settings.request_timeout_s)
        await asyncio.to_thread(self.cpu.shutdown, True)

    def new_deadline(self, started_at: float | None = None) -> float:
        """The deadline (event-loop clock) of a request arriving now or at ``started_at``."""
        loop = asyncio.get_running_loop()
        start = loop.time() if started_at is None else started_at
        return start + self.settings.request_timeout_s

    def finish_timings(self, request: Request, timings: dict[str, float], started: float) -> None:
        """Close a request's stage timings: ``total`` since ``started`` (``perf_counter``),
        kept on the request for the access log and observed by the stage metrics."""
        timings["total"] = round((time.perf_counter() - started) * 1000.0, 3)
        request.state.timings_ms = timings
        self.metrics.observe_stages(timings)

    async def run_cpu(self, deadline: float, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in the CPU pool, awaited at most until ``deadline``."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.cpu, functools.partial(fn, *args, **kwargs))
        try:
            return await asyncio.wait_for(future, max(deadline - loop.time(), 0.0))
        except TimeoutError:
            raise DeadlineExceeded("deadline passed during CPU work") from None

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
    ) -> np.ndarray:
        """Selective search in the CPU pool at the model's proposal settings."""
        config = self.detector.model.manifest.proposals
        with timed(timings, "proposals"):
            return await self.run_cpu(deadline, self.proposer, image, config, max_proposals)

    async def detect(
        self,
        image: np.ndarray,
        options: DetectOptions,
        *,
        max_proposals: int | None,
        deadline: float,
        timings: dict[str, float],
    ) -> InferenceOutcome[DetectionResult]:
        """Selective search in the CPU pool, then the batched detector."""
        proposals = await self.propose(
            image, max_proposals=max_proposals, deadline=deadline, timings=timings
        )
        outcome = await self.worker.detect(image, proposals, options, deadline=deadline)
        timings["queue"] = round(outcome.queue_ms, 3)
        timings.update(outcome.value.timings_ms)
        timings["inference"] = round(outcome.inference_ms, 3)
        return outcome

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
        selective search in the CPU pool first, as for ``detect``)."""
        proposals = None
        if views == "detect":
            proposals = await self.propose(
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
            return await self.run_cpu(
                deadline, draw_detections, image, result.detections, image_format
            )

    def warm_up(self) -> None:
        """Blocking: one detector warm-up and one selective search on a small image."""
        self.detector.warm_up()
        rng = np.random.default_rng(0)
        image = rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
        self.proposer(image, self.detector.model.manifest.proposals, 16)


def server_timing_header(timings: dict[str, float]) -> str:
    """``Server-Timing`` header value (``stage;dur=ms, ...``) for browser dev tools."""
    return ", ".join(f"{stage};dur={ms:.3f}" for stage, ms in timings.items())
