"""The stages every loaded model shares: the admission gate, the CPU pool and the proposal
stage (its process pool and cache).

CPU stages (decoding, hashing, downscaling, drawing) run in a bounded thread pool sized to
the cores: Pillow and OpenCV release the GIL in their C code, images need no pickling, and
uploads stay in this process's memory. Selective search's jobs run on the shared process pool
of :class:`~app.service.proposing.ProposalStage` (exact and reproducible; OpenCV runs it on one
thread per call, so only processes use the cores), with the requesting model's settings. The
network runs on each model's own :class:`~app.service.batching.InferenceWorker`
(:mod:`app.service.registry`). The event loop only awaits.

Every stage is timed into the request's ``timings`` dict (milliseconds) and bounded by the
request's deadline (:class:`~app.service.batching.DeadlineExceeded` past it). A CPU task that
outlives its deadline finishes in the background; its result is dropped.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from app.imaging import decode_image, encode_image
from app.inference.detector import DetectionResult
from app.inference.draw import draw_detections
from app.inference.timing import timed
from app.model.config import ProposalConfig
from app.service.batching import AdmissionGate
from app.service.metrics import ServiceMetrics
from app.service.proposing import ProposalsSource, ProposalStage, Searcher, await_until
from app.service.settings import Settings

T = TypeVar("T")


def render_detections(image: np.ndarray, result: DetectionResult, image_format: str) -> bytes:
    """``image`` (``ndarray[H, W, 3] uint8`` RGB) with ``result``'s boxes drawn, encoded as
    ``image_format`` (png or jpeg)."""
    return encode_image(draw_detections(image, result.detections), image_format)


class SharedStages:
    """The admission gate, the CPU pool and the proposal stage of the process
    (``searcher``: see :class:`~app.service.proposing.ProposalStage`)."""

    def __init__(
        self, settings: Settings, metrics: ServiceMetrics, searcher: Searcher | None = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.gate = AdmissionGate(settings.queue_size, metrics)
        self.cpu = ThreadPoolExecutor(settings.proposal_workers, thread_name_prefix="cpu")
        self.proposals = ProposalStage(
            ProposalConfig(),
            workers=settings.proposal_workers,
            cache_size=settings.proposal_cache_size,
            cpu=self.cpu,
            metrics=metrics,
            searcher=searcher,
        )

    def close(self) -> None:
        """Blocking: stop the selective-search processes and the CPU threads."""
        self.proposals.shutdown()
        self.cpu.shutdown(wait=True)

    def warm_up(self) -> None:
        """Blocking: one selective search on a small image (starts the pool's workers)."""
        self.proposals.warm_up()

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
        config: ProposalConfig,
        *,
        max_proposals: int | None,
        deadline: float,
        timings: dict[str, float],
        supplied: np.ndarray | None = None,
    ) -> tuple[np.ndarray, ProposalsSource]:
        """The windows of ``image``: ``supplied`` (ndarray[N, 4], already validated) when given,
        else selective search at the model's ``config`` (cached); with their source."""
        source: ProposalsSource
        with timed(timings, "proposals"):
            if supplied is not None:
                boxes, source = supplied, "client"
            else:
                boxes, source = await self.proposals.propose(
                    image, max_proposals=max_proposals, deadline=deadline, config=config
                )
        self.metrics.proposals.labels(source=source).inc()
        return boxes, source

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
