"""The protocol's :class:`~app.service.oip.spp_backend.SppEngine` over this service's own engine.

An inference request of either transport goes the way ``/detect`` and ``/classify`` go once
their upload is read: a slot in the admission gate (503 when full), the request's deadline
(504), decoding in the CPU pool (``ImageError``), selective search, the one batching worker
(batched with the ``/detect`` requests waiting with it), and the stage timings into
``spp_stage_duration_seconds``. Over HTTP the timings also reach the access log line, through
:func:`record_timings`.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Sequence

from fastapi import Request

from app.inference.results import Detection, Prediction
from app.service.batching import ShuttingDown
from app.service.engine import InferenceEngine
from app.service.oip.protocol_errors import OipError
from app.service.oip.spp_backend import LoadedModel
from app.service.api_models import DetectParams
from app.service.state import ServiceState

#: The stage timings (milliseconds) of the HTTP request being served, when one is.
_REQUEST_TIMINGS: contextvars.ContextVar[dict[str, float] | None] = contextvars.ContextVar(
    "oip_request_timings", default=None
)


async def record_timings(request: Request) -> None:
    """A route dependency: the inference's stage timings go into the request's access log
    line (``request.state.timings_ms``). Async, so it runs in the endpoint's context."""
    timings: dict[str, float] = {}
    request.state.timings_ms = timings
    _REQUEST_TIMINGS.set(timings)


class ServiceEngine:
    """Runs the protocol's two models on the model of ``state`` (see the module docstring)."""

    def __init__(self, state: ServiceState) -> None:
        self.state = state

    def live(self) -> bool:
        """The process serves: true for as long as it answers at all."""
        return True

    def ready(self) -> bool:
        """The model is loaded and warm, and the service not stopping."""
        return self.state.status == "ready" and self.state.engine is not None

    def loaded_model(self) -> LoadedModel | None:
        """The ready model's version and classes, else ``None``."""
        engine = self.state.engine
        if not self.ready() or engine is None:
            return None
        model = engine.detector.model
        return LoadedModel(version=model.version, classes=tuple(model.classes))

    def _engine(self) -> InferenceEngine:
        engine = self.state.engine
        if engine is None or self.state.status != "ready":
            raise ShuttingDown("the service is shutting down")
        return engine

    async def detect(
        self, image: bytes, params: DetectParams, class_ids: tuple[int, ...] | None
    ) -> Sequence[Detection]:
        """Detections of the encoded ``image``, best first, exactly as ``/detect`` finds them
        for ``params`` (``class_ids``: ``params.classes`` resolved; ``None`` for all)."""
        engine = self._engine()
        started = time.perf_counter()
        timings = self._timings()
        deadline = engine.new_deadline()
        with engine.gate.slot():
            decoded = await engine.decode(image, deadline=deadline, timings=timings)
            outcome = await engine.detect(
                decoded,
                params.detect_options(class_ids),
                max_proposals=params.max_proposals,
                deadline=deadline,
                timings=timings,
            )
        engine.close_timings(timings, started)
        return outcome.value.detections

    async def classify(self, image: bytes) -> Sequence[Prediction]:
        """Full-image SPP classification of the encoded ``image``: all K classes."""
        engine = self._engine()
        if not engine.detector.model.manifest.model.classifier:
            raise OipError(
                400, "this model has no whole-image classification head; use the detection model"
            )
        started = time.perf_counter()
        timings = self._timings()
        deadline = engine.new_deadline()
        with engine.gate.slot():
            decoded = await engine.decode(image, deadline=deadline, timings=timings)
            num_classes = len(engine.detector.model.classes)
            outcome = await engine.classify(
                decoded, num_classes, deadline=deadline, timings=timings, views="full"
            )
        engine.close_timings(timings, started)
        return outcome.value

    @staticmethod
    def _timings() -> dict[str, float]:
        timings = _REQUEST_TIMINGS.get()
        return timings if timings is not None else {}
