"""The model request sequence, written once and used by ``/detect``, ``/classify`` and the Open
Inference Protocol over HTTP and gRPC.

1. :func:`admit`: a slot of the admission gate (503 when full) *before the body is read*, the
   deadline (``REQUEST_TIMEOUT_S`` from now), fresh stage timings;
2. the transport reads its body and names the model; :meth:`ModelRegistry.lease
   <app.service.registry.ModelRegistry.lease>` pins the version that answers (404 not loaded,
   503 not ready);
3. :func:`detect` or :func:`classify`: decode in the CPU pool, proposals (the client's, the
   cache, or selective search at the model's settings), the model's batching worker, and for
   ``/detect`` the drawn image;
4. leaving :func:`admit` closes the timings (``total``) and observes them in the stage metrics.

Nothing here knows HTTP or gRPC: options arrive as
:class:`~app.inference.results.DetectOptions`; answers leave as detector results.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.data.client_proposals import clip_client_proposals
from app.inference.detector import DetectionResult, DetectOptions, Prediction, ViewMode
from app.service.batching import InferenceOutcome
from app.service.model_serving import ModelServing
from app.service.proposing import ProposalsSource
from app.service.registry import ModelRegistry
from app.service.serving_errors import ModelUnavailable
from app.service.stages import SharedStages

_CURRENT: contextvars.ContextVar[ModelRequest | None] = contextvars.ContextVar(
    "model_request", default=None
)


@dataclass
class ModelRequest:
    """One admitted model request: the shared stages, its clock, deadline and timings (ms)."""

    stages: SharedStages
    deadline: float
    """On the event loop's clock."""
    started: float = field(default_factory=time.perf_counter)
    timings: dict[str, float] = field(default_factory=dict)


def current_request() -> ModelRequest | None:
    """The request admitted in this task (``None`` outside :func:`admit`)."""
    return _CURRENT.get()


def _stages(registry: ModelRegistry) -> SharedStages:
    if registry.stages is None:
        status, reason = registry.status(registry.settings.model_name)
        raise ModelUnavailable(f"model not ready: {reason or status}")
    return registry.stages


@contextlib.contextmanager
def admit(registry: ModelRegistry) -> Iterator[ModelRequest]:
    """Hold an admission slot for the block (``Overloaded``, 503, when none is free).

    On a normal exit the timings get ``total`` and go to ``spp_stage_duration_seconds``.
    """
    stages = _stages(registry)
    deadline = asyncio.get_running_loop().time() + registry.settings.request_timeout_s
    with stages.gate.slot():
        request = ModelRequest(stages, deadline)
        token = _CURRENT.set(request)
        try:
            yield request
        finally:
            _CURRENT.reset(token)
    request.timings["total"] = round((time.perf_counter() - request.started) * 1000.0, 3)
    stages.metrics.observe_stages(request.timings)


def _record(request: ModelRequest, outcome: InferenceOutcome[Any]) -> None:
    request.timings["queue"] = round(outcome.queue_ms, 3)
    request.timings["inference"] = round(outcome.inference_ms, 3)


@dataclass
class Detected:
    """What :func:`detect` found: the decoded image, the detector's outcome, where the windows
    came from, and the drawn image when one was asked for."""

    image: np.ndarray
    outcome: InferenceOutcome[DetectionResult]
    source: ProposalsSource
    rendered: bytes | None = None


async def detect(
    request: ModelRequest,
    serving: ModelServing,
    data: bytes,
    options: DetectOptions,
    *,
    max_proposals: int | None = None,
    supplied: np.ndarray | None = None,
    render_format: str | None = None,
) -> Detected:
    """Decode ``data``, find its windows (``supplied``: the client's, ndarray[N, 4], clipped
    to the image here; raises ``ClientProposalsError`` for an empty one), detect, and draw
    when ``render_format`` (png or jpeg) is given."""
    stages, timings = request.stages, request.timings
    image = await stages.decode(data, deadline=request.deadline, timings=timings)
    if supplied is not None:
        supplied = clip_client_proposals(supplied, width=image.shape[1], height=image.shape[0])
    proposals, source = await stages.propose(
        image,
        serving.detector.model.manifest.proposals,
        max_proposals=max_proposals,
        deadline=request.deadline,
        timings=timings,
        supplied=supplied,
    )
    outcome = await serving.detect(image, proposals, options, request.deadline)
    timings["queue"] = round(outcome.queue_ms, 3)
    timings.update(outcome.value.timings_ms)
    _record(request, outcome)
    found = Detected(image, outcome, source)
    if render_format is not None:
        found.rendered = await stages.render(
            image, outcome.value, render_format, deadline=request.deadline, timings=timings
        )
    return found


async def classify(
    request: ModelRequest, serving: ModelServing, data: bytes, top_k: int, views: ViewMode
) -> tuple[np.ndarray, list[Prediction]]:
    """Decode ``data`` and classify it (``views="detect"``: selective search first, cached);
    the decoded image and the ``top_k`` best classes."""
    stages, timings = request.stages, request.timings
    image = await stages.decode(data, deadline=request.deadline, timings=timings)
    proposals = None
    if views == "detect":
        proposals, _ = await stages.propose(
            image,
            serving.detector.model.manifest.proposals,
            max_proposals=None,
            deadline=request.deadline,
            timings=timings,
        )
    outcome = await serving.classify(
        image, top_k, deadline=request.deadline, views=views, proposals=proposals
    )
    _record(request, outcome)
    return image, outcome.value
