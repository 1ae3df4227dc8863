"""One loaded version of one model: :class:`ModelServing` (its detector, its batching worker,
the requests holding it) and what is measured and reported about it (memory, metrics).

The registry (:mod:`app.service.registry`) holds one per loaded model and swaps them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from app.inference.detector import DetectionResult, DetectOptions, Detector, Prediction, ViewMode
from app.service.batching import InferenceOutcome, InferenceWorker
from app.service.metrics import ServiceMetrics
from app.service.proposing import ProposalStage
from app.service.settings import Settings

logger = logging.getLogger(__name__)


def parameter_bytes(detector: Detector) -> int:
    """Bytes of the network's parameters and buffers on its device."""
    net = detector.model.net
    tensors = [*net.parameters(), *net.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def release_device_memory() -> None:
    """Return the CUDA allocator's cached blocks of freed models to the device (no-op off
    CUDA); called once a retired version is dropped."""
    if torch.cuda.is_available():
        gc.collect()
        torch.cuda.empty_cache()


def cuda_allocated(device: torch.device) -> int | None:
    """Bytes held by the CUDA caching allocator on ``device`` (``None`` off CUDA)."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    return int(torch.cuda.memory_allocated(device))


@dataclass(frozen=True)
class ModelMemory:
    """Memory of one loaded model version, bytes."""

    parameters: int
    """Its weights and buffers."""
    cuda_allocated: int | None
    """Growth of the CUDA allocator while it loaded and warmed up (``None`` off CUDA; other
    loads at the same time blur it)."""


class ModelServing:
    """One loaded version of one model: its detector, its inference worker, its leases."""

    def __init__(
        self,
        detector: Detector,
        settings: Settings,
        metrics: ServiceMetrics,
        memory: ModelMemory,
        proposals: ProposalStage,
    ) -> None:
        self.detector = detector
        self.settings = settings
        self.memory = memory
        self.proposals = proposals
        """The process's proposal stage, shared with the other models (its cache included)."""
        self.load_time_s: float | None = None
        self.worker = InferenceWorker(
            detector,
            queue_size=settings.queue_size,
            max_batch_size=settings.max_batch_size,
            batch_wait_s=settings.batch_wait_ms / 1000.0,
            metrics=metrics,
        )
        self.in_flight = 0

    @property
    def name(self) -> str:
        return self.detector.model.name

    @property
    def version(self) -> str:
        return self.detector.model.version

    def start(self) -> None:
        """Start the inference worker (on the running loop)."""
        self.worker.start()

    @contextlib.contextmanager
    def lease(self) -> Iterator[ModelServing]:
        """Hold this version for one request: it is not stopped before the block ends."""
        self.in_flight += 1
        try:
            yield self
        finally:
            self.in_flight -= 1

    async def retire(self, timeout_s: float) -> None:
        """Wait for the requests holding this version (up to ``timeout_s``), then stop the
        worker and drop the network."""
        deadline = time.monotonic() + timeout_s
        while self.in_flight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await self.worker.stop(timeout_s=timeout_s)

    async def detect(
        self, image: np.ndarray, proposals: np.ndarray, options: DetectOptions, deadline: float
    ) -> InferenceOutcome[DetectionResult]:
        """The batched detector on ``image`` and its windows (ndarray[N, 4] float32)."""
        return await self.worker.detect(image, proposals, options, deadline=deadline)

    async def classify(
        self,
        image: np.ndarray,
        top_k: int,
        *,
        deadline: float,
        views: ViewMode,
        proposals: np.ndarray | None,
    ) -> InferenceOutcome[list[Prediction]]:
        """Whole-image classification through the batched detector."""
        return await self.worker.classify(
            image, top_k, deadline=deadline, views=views, proposals=proposals
        )


def report_loaded(metrics: ServiceMetrics, serving: ModelServing, *, default: bool) -> None:
    """Metrics and the log line of a version that now serves (``default``: ``MODEL_NAME``)."""
    detector, name = serving.detector, serving.name
    if default:
        metrics.model_ready.set(1)
        metrics.model_load_seconds.set(serving.load_time_s or 0.0)
    metrics.model_info.labels(name=name, version=serving.version, device=str(detector.device)).set(
        1
    )
    metrics.model_memory.labels(model=name, kind="parameters").set(serving.memory.parameters)
    if serving.memory.cuda_allocated is not None:
        metrics.model_memory.labels(model=name, kind="cuda_allocated").set(
            serving.memory.cuda_allocated
        )
    logger.info(
        "model ready",
        extra={
            "fields": {
                "model": name,
                "version": serving.version,
                "device": str(detector.device),
                "load_time_s": round(serving.load_time_s or 0.0, 3),
            }
        },
    )


def forget_version(metrics: ServiceMetrics, serving: ModelServing) -> None:
    """Drop a retired version's ``spp_model_info`` series."""
    with contextlib.suppress(KeyError):
        metrics.model_info.remove(serving.name, serving.version, str(serving.detector.device))
