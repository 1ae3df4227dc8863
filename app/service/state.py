"""The service's lifecycle: loading -> ready (or failed) -> stopping.

The model is loaded and warmed up in a background thread started by the lifespan, so the
process answers ``/healthz`` at once and ``/readyz`` says 503 with the reason until the model
is ready. **A model that fails to load leaves the process up but never ready**: ``/readyz``
answers 503 ``{"status": "failed", "reason": "<the ModelLoadError message>"}``, model routes
answer 503 with the same reason, and the error is logged. An orchestrator sees the reason
in the readiness probe instead of a restart loop with the message lost in old logs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Literal

from app.inference.detector import Detector
from app.model.store import ModelLoadError, load_model
from app.service.engine import InferenceEngine
from app.service.metrics import ServiceMetrics
from app.service.proposing import Searcher
from app.service.settings import Settings

logger = logging.getLogger(__name__)

Status = Literal["loading", "ready", "failed", "stopping"]
#: ``loader(settings) -> Detector``: blocking, runs in a worker thread.
DetectorLoader = Callable[[Settings], Detector]


def load_detector(settings: Settings) -> Detector:
    """Load ``settings.model_name`` from ``settings.model_store`` onto ``settings.device``.

    Raises:
        ModelLoadError: the manifest or weights are missing, invalid or tampered with.
    """
    model = load_model(settings.model_store, settings.model_name, device="cpu")
    return Detector(model, device=settings.device, precision=settings.precision)


class ServiceState:
    """What the routes need to know about the model: status, reason, and the inference engine."""

    def __init__(self, settings: Settings, metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.status: Status = "loading"
        self.reason: str | None = f"loading model {settings.model_name!r}"
        self.engine: InferenceEngine | None = None
        self.load_time_s: float | None = None

    async def load(self, loader: DetectorLoader, searcher: Searcher | None = None) -> None:
        """Load, warm up and start the engine; on failure record the reason (never raises)."""
        started = time.perf_counter()
        try:
            engine = await asyncio.to_thread(self._build, loader, searcher)
        except ModelLoadError as exc:
            self._failed(str(exc))
            return
        except Exception as exc:  # e.g. CUDA requested but absent, out of memory
            logger.exception("model load failed")
            self._failed(f"{type(exc).__name__}: {exc}")
            return
        if self.status == "stopping":  # shut down while loading
            await engine.stop()
            return
        engine.start()
        self.engine = engine
        self.load_time_s = time.perf_counter() - started
        self.status, self.reason = "ready", None
        detector = engine.detector
        self.metrics.model_load_seconds.set(self.load_time_s)
        self.metrics.model_ready.set(1)
        self.metrics.model_info.labels(
            name=detector.model.name, version=detector.model.version, device=str(detector.device)
        ).set(1)
        logger.info(
            "model ready",
            extra={
                "fields": {
                    "model": detector.model.name,
                    "version": detector.model.version,
                    "device": str(detector.device),
                    "load_time_s": round(self.load_time_s, 3),
                }
            },
        )

    def _build(self, loader: DetectorLoader, searcher: Searcher | None) -> InferenceEngine:
        detector = loader(self.settings)
        engine = InferenceEngine(detector, self.settings, self.metrics, searcher)
        if self.settings.warm_up:
            try:
                engine.warm_up()
            except BaseException:
                engine.close_pools()
                raise
        return engine

    def _failed(self, reason: str) -> None:
        self.status, self.reason = "failed", f"model failed to load: {reason}"
        self.metrics.model_ready.set(0)
        logger.error("model failed to load", extra={"fields": {"reason": reason}})

    async def stop(self) -> None:
        """Stop taking requests and drain the engine."""
        self.status, self.reason = "stopping", "the service is shutting down"
        self.metrics.model_ready.set(0)
        if self.engine is not None:
            await self.engine.stop()
