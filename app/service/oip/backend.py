"""What the protocol's transports (HTTP routes, gRPC servicer) need from the server behind them.

Any object with these methods serves: :class:`app.service.oip.spp_backend.SppBackend` is the one of
this service's models; tests use a fake with fixed outputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from app.service.oip.messages import (
    InferRequest,
    ModelMetadata,
    OutputTensor,
    ServerMetadata,
    build_outputs,
    check_inputs,
)
from app.service.oip.protocol_errors import OipError


class InferenceBackend(Protocol):
    """The server behind the protocol: health, metadata and inference of named models."""

    def server_metadata(self) -> ServerMetadata:
        """Server name, version and extensions."""
        ...

    def live(self) -> bool:
        """The process can answer (``/v2/health/live``, ``ServerLive``)."""
        ...

    def ready(self) -> bool:
        """Every model can run inference now (``/v2/health/ready``, ``ServerReady``)."""
        ...

    def model_metadata(self, name: str) -> ModelMetadata | None:
        """The metadata of model ``name``, or ``None`` when there is no such model. Its
        ``versions`` are the loaded ones (empty while loading)."""
        ...

    def model_ready(self, name: str) -> bool:
        """Model ``name`` can run inference now."""
        ...

    def admission(self) -> AbstractContextManager[object]:
        """Held by a transport around one inference *from before its body is read*: the
        server's admission control (raises to refuse, e.g. 503 when busy)."""
        ...

    async def infer(
        self, name: str, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, Any]
    ) -> dict[str, np.ndarray]:
        """Run model ``name``.

        Args:
            inputs: arrays by input name, already checked against the model's metadata
                (names, datatypes, shapes); ``BYTES`` inputs are ``object`` arrays of ``bytes``.
            parameters: the request's parameters meant for the model (JSON values, or over
                gRPC the ``InferParameter`` value: bool, int, float or str).

        Returns:
            Every output of the model's metadata by name, with its datatype's numpy dtype.

        Raises:
            OipError: a request the model refuses (a bad parameter, 400); other exceptions
                go through the transport's error translator.
        """
        ...


def resolve_model(backend: InferenceBackend, name: str, version: str = "") -> ModelMetadata:
    """The metadata of model ``name`` at ``version`` (``""``: the loaded one); 404 when the
    server has no such model or version."""
    model = backend.model_metadata(name)
    if model is None:
        raise OipError(404, f"unknown model '{name}'")
    if version and version not in model.versions:
        raise OipError(404, f"unknown version '{version}' of model '{name}'")
    return model


async def run_inference(
    backend: InferenceBackend, name: str, version: str, request: InferRequest
) -> tuple[ModelMetadata, list[OutputTensor]]:
    """One inference, transport aside: the model (404), its readiness (503), the inputs
    against its metadata (400), the backend, and its outputs as answer tensors."""
    model = resolve_model(backend, name, version)
    if not backend.model_ready(name):
        raise OipError(503, f"model '{name}' is not ready", headers={"Retry-After": "5"})
    arrays = check_inputs(request, model)
    outputs = await backend.infer(name, arrays, request.model_parameters())
    return model, build_outputs(request, model, outputs)


@dataclass(frozen=True)
class RepositoryModel:
    """One row of the repository index: ``state`` is ``READY``, ``UNAVAILABLE`` or
    ``LOADING``; ``reason`` says why it is not ready (or why its last reload failed)."""

    name: str
    version: str
    state: str
    reason: str


class ModelRepository(Protocol):
    """The model repository extension: list, load (or reload) and unload models."""

    def index(self) -> Sequence[RepositoryModel]:
        """Every model the repository holds, loaded or not."""
        ...

    async def load(self, name: str) -> None:
        """Load ``name``, or reload it when loaded; raises with the reason when it fails."""
        ...

    async def unload(self, name: str) -> None:
        """Unload ``name`` (its in-flight requests finish first)."""
        ...


def check_load_parameters(names: Sequence[str]) -> None:
    """Refuse Triton's load overrides (``config``, ``file:...``) with a 400: a model is loaded
    from its directory in the store as it is."""
    for name in names:
        if name == "config" or name.startswith("file:"):
            raise OipError(
                400,
                f"load parameter {name!r} is not supported: models load from their directory "
                "in the model store as they are",
            )


def index_json(models: Sequence[RepositoryModel], ready_only: bool) -> list[dict[str, str]]:
    """The index as the protocol's JSON list (``ready_only``: the ``READY`` models only)."""
    return [
        {"name": m.name, "version": m.version, "state": m.state, "reason": m.reason}
        for m in models
        if not ready_only or m.state == "READY"
    ]
