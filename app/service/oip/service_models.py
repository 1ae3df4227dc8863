"""The protocol's :class:`~app.service.oip.spp_backend.SppModels` and
:class:`~app.service.oip.backend.ModelRepository` over this service's
:class:`~app.service.registry.ModelRegistry`.

An inference of either transport goes through :mod:`app.service.requests`, the sequence
``/detect`` and ``/classify`` use: the transport takes the admission slot (:meth:`admission`)
before it reads the body, then the model's version is leased (a reload or unload waits for
it), decoded in the CPU pool, proposals found, the model's batching worker (batched with the
``/detect`` requests waiting with it), and the stage timings into
``spp_stage_duration_seconds`` (over HTTP also into the access log line).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

from app.inference.results import Detection, Prediction
from app.service import requests
from app.service.detection_options import DetectionParams
from app.service.oip.backend import RepositoryModel
from app.service.oip.protocol_errors import OipError
from app.service.oip.spp_backend import LoadedModel
from app.service.registry import ModelRegistry
from app.service.serving_errors import ModelControlDisabled


@contextmanager
def _admitted(registry: ModelRegistry) -> Iterator[requests.ModelRequest]:
    """The request admitted by the transport, or (a direct call) one admitted here."""
    current = requests.current_request()
    if current is not None:
        yield current
        return
    with requests.admit(registry) as request:
        yield request


@dataclass(frozen=True)
class ModelEngine:
    """One model of the registry as the protocol's ``SppEngine``."""

    registry: ModelRegistry
    name: str

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.registry.ready(self.name)

    def loaded_model(self) -> LoadedModel | None:
        """The serving version and classes, else ``None``."""
        serving = self.registry.loaded().get(self.name)
        if serving is None or not self.ready():
            return None
        return LoadedModel(version=serving.version, classes=tuple(serving.detector.model.classes))

    async def detect(
        self, image: bytes, params: DetectionParams, class_ids: tuple[int, ...] | None
    ) -> Sequence[Detection]:
        """Detections of the encoded ``image``, best first, exactly as ``/detect`` finds them
        for ``params`` (``class_ids``: ``params.classes`` resolved; ``None`` for all)."""
        with _admitted(self.registry) as request, self.registry.lease(self.name) as serving:
            found = await requests.detect(
                request,
                serving,
                image,
                params.detect_options(class_ids),
                max_proposals=params.max_proposals,
            )
        return found.outcome.value.detections

    async def classify(self, image: bytes) -> Sequence[Prediction]:
        """Full-image SPP classification of the encoded ``image``: all K classes."""
        with _admitted(self.registry) as request, self.registry.lease(self.name) as serving:
            model = serving.detector.model
            if not model.manifest.model.classifier:
                raise OipError(
                    400,
                    "this model has no whole-image classification head; use the detection model",
                )
            _, predictions = await requests.classify(
                request, serving, image, len(model.classes), "full"
            )
        return predictions


@dataclass(frozen=True)
class RegistryModels:
    """Every model of the registry (loaded or loading), for the protocol."""

    registry: ModelRegistry

    def names(self) -> Sequence[str]:
        return list(self.registry.entries)

    def engine(self, name: str) -> ModelEngine | None:
        return ModelEngine(self.registry, name) if name in self.registry.entries else None

    def ready(self) -> bool:
        """The server is ready when ``MODEL_NAME`` is, as ``/readyz`` (a failed extra model
        shows in its own readiness and the repository index, not in the probes)."""
        return self.registry.ready(self.registry.settings.model_name)

    def admission(self) -> AbstractContextManager[object]:
        return requests.admit(self.registry)


@dataclass(frozen=True)
class RegistryRepository:
    """The repository extension over the registry; load and unload need
    ``MODEL_CONTROL=explicit`` (else :class:`ModelControlDisabled`, 403)."""

    registry: ModelRegistry

    def index(self) -> Sequence[RepositoryModel]:
        return [
            RepositoryModel(e.name, e.version, e.state, e.reason) for e in self.registry.index()
        ]

    def _check_control(self) -> None:
        if self.registry.settings.model_control != "explicit":
            raise ModelControlDisabled()

    async def load(self, name: str) -> None:
        self._check_control()
        await self.registry.load(name)

    async def unload(self, name: str) -> None:
        self._check_control()
        await self.registry.unload(name)
