"""This service's models in the protocol: every loaded model ``X`` is served as two protocol
models, over the engine that runs it.

============================  ==============================  ===================================
model                         input                           outputs
============================  ==============================  ===================================
``X``                         ``IMAGE`` BYTES ``[1]``: the     ``BOXES`` FP32 ``[N, 4]`` (x1, y1,
                              encoded image file (JPEG, PNG,   x2, y2 pixels), ``SCORES`` FP32
                              ... as for ``/detect``)          ``[N]`` (calibrated confidence),
                                                               ``CLASS_IDS`` INT64 ``[N]``,
                                                               ``LABELS`` BYTES ``[N]``
``X-classify``                ``IMAGE`` as above               ``PROBABILITIES`` FP32 ``[K]`` and
                                                               ``LABELS`` BYTES ``[K]``, in the
                                                               model's class order
============================  ==============================  ===================================

Detection request parameters are ``/detect``'s options (``scales``, ``min_confidence``,
``nms_iou``, ``max_detections``, ``classes``, ``max_proposals``), validated by the same
:class:`~app.service.detection_options.DetectionParams`; a bad one is a 400. Classification
takes none.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from pydantic import ValidationError

from app.service.detection_options import (
    DetectionParams,
    UnknownClassError,
    class_ids_from_names,
)
from app.service.oip.messages import EXTENSIONS, ModelMetadata, ServerMetadata, TensorSpec
from app.service.oip.protocol_errors import OipError, bad_request

CLASSIFY_SUFFIX = "-classify"
PLATFORM = "pytorch"
IMAGE = TensorSpec("IMAGE", "BYTES", (1,))
DETECTION_OUTPUTS = (
    TensorSpec("BOXES", "FP32", (-1, 4)),
    TensorSpec("SCORES", "FP32", (-1,)),
    TensorSpec("CLASS_IDS", "INT64", (-1,)),
    TensorSpec("LABELS", "BYTES", (-1,)),
)
#: ``/detect``'s detection options (not ``format`` or ``model``: the protocol has its own).
DETECT_PARAMETERS = tuple(DetectionParams.model_fields)


class DetectionLike(Protocol):
    """What is read of one detection (``app.inference`` ``Detection`` has it)."""

    @property
    def label(self) -> str: ...
    @property
    def class_id(self) -> int: ...
    @property
    def confidence(self) -> float: ...
    @property
    def box(self) -> Sequence[float]: ...


class PredictionLike(Protocol):
    """What is read of one class of a classification (``Prediction`` has it)."""

    @property
    def class_id(self) -> int: ...
    @property
    def probability(self) -> float: ...


@dataclass(frozen=True)
class LoadedModel:
    """The loaded model's version and class names (index = class id)."""

    version: str
    classes: tuple[str, ...]


class SppEngine(Protocol):
    """What the protocol needs of the service's engine (implemented by the service).

    ``detect`` and ``classify`` take the uploaded file's bytes and go the way ``/detect`` and
    ``/classify`` go (admission, decoding, proposals, the batching worker, deadline); their
    exceptions (image errors, overload, deadline) reach the transport's error translator.
    """

    def live(self) -> bool: ...

    def ready(self) -> bool: ...

    def loaded_model(self) -> LoadedModel | None:
        """The model once loaded, else ``None``."""
        ...

    async def detect(
        self, image: bytes, params: DetectionParams, class_ids: tuple[int, ...] | None
    ) -> Sequence[DetectionLike]:
        """Detections of ``image``, best first, as ``/detect`` returns them for ``params``
        (``class_ids``: ``params.classes`` already resolved, ``None`` for all)."""
        ...

    async def classify(self, image: bytes) -> Sequence[PredictionLike]:
        """Full-image classification: one prediction per class, in any order."""
        ...


def detect_params(parameters: Mapping[str, Any]) -> DetectionParams:
    """Request parameters -> ``DetectionParams`` (400 naming the first bad parameter)."""
    unknown = [name for name in parameters if name not in DETECT_PARAMETERS]
    if unknown:
        raise bad_request(
            f"unknown parameter '{unknown[0]}': expected some of " + ", ".join(DETECT_PARAMETERS)
        )
    try:
        return DetectionParams.model_validate(dict(parameters))
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(part) for part in first["loc"])
        raise bad_request(f"invalid parameter '{name}': {first['msg']}") from None


def resolve_class_ids(names: str | None, classes: Sequence[str]) -> tuple[int, ...] | None:
    """Comma-separated labels -> sorted class ids (``None``: all); unknown labels are a 400
    with ``/detect``'s message."""
    try:
        return class_ids_from_names(names, classes)
    except UnknownClassError as exc:
        raise bad_request(str(exc)) from None


def detection_arrays(detections: Sequence[DetectionLike]) -> dict[str, np.ndarray]:
    """Detections -> ``BOXES`` float32 [N, 4], ``SCORES`` float32 [N], ``CLASS_IDS`` int64 [N],
    ``LABELS`` object [N] of UTF-8 ``bytes``, in the detections' order."""
    labels = np.empty(len(detections), dtype=object)
    labels[:] = [d.label.encode("utf-8") for d in detections]
    return {
        "BOXES": np.asarray([list(d.box) for d in detections], dtype=np.float32).reshape(-1, 4),
        "SCORES": np.asarray([d.confidence for d in detections], dtype=np.float32),
        "CLASS_IDS": np.asarray([d.class_id for d in detections], dtype=np.int64),
        "LABELS": labels,
    }


def probability_arrays(
    predictions: Sequence[PredictionLike], classes: Sequence[str]
) -> dict[str, np.ndarray]:
    """One prediction per class -> ``PROBABILITIES`` float32 [K] and ``LABELS`` object [K], in
    class order."""
    by_class = {p.class_id: p.probability for p in predictions}
    if sorted(by_class) != list(range(len(classes))):
        raise RuntimeError(f"expected one prediction per class 0..{len(classes) - 1}")
    labels = np.empty(len(classes), dtype=object)
    labels[:] = [name.encode("utf-8") for name in classes]
    probabilities = np.asarray([by_class[k] for k in range(len(classes))], dtype=np.float32)
    return {"PROBABILITIES": probabilities, "LABELS": labels}


class SppModels(Protocol):
    """The models behind the protocol: their names and each one's engine."""

    def names(self) -> Sequence[str]:
        """The served models (loaded, or loading)."""
        ...

    def engine(self, name: str) -> SppEngine | None:
        """The engine of model ``name`` (``None``: no such model)."""
        ...

    def ready(self) -> bool:
        """Every model can answer now."""
        ...

    def admission(self) -> AbstractContextManager[object]:
        """Admission control around one inference (see ``InferenceBackend.admission``)."""
        ...


@dataclass(frozen=True)
class OneModel:
    """:class:`SppModels` of one engine served under one name (``admission``: none)."""

    name: str
    single: SppEngine

    def names(self) -> Sequence[str]:
        return (self.name,)

    def engine(self, name: str) -> SppEngine | None:
        return self.single if name == self.name else None

    def ready(self) -> bool:
        return self.single.ready()

    def admission(self) -> AbstractContextManager[object]:
        return contextlib.nullcontext()


class SppBackend:
    """The :class:`~app.service.oip.backend.InferenceBackend` of the service's models.

    Args:
        models: what runs the models (:class:`SppModels`); each model ``X`` is served as
            ``X`` (detection) and ``X-classify``.
        server_version: reported by ``GET /v2``.
        max_image_bytes: largest ``IMAGE`` element (the upload limit of ``/detect``).
        extensions: the protocol extensions ``GET /v2`` lists.
    """

    def __init__(
        self,
        models: SppModels,
        *,
        server_version: str,
        max_image_bytes: int,
        server_name: str = "spp-service",
        extensions: tuple[str, ...] = EXTENSIONS,
    ) -> None:
        self.models = models
        self.server = ServerMetadata(server_name, server_version, extensions)
        self.max_image_bytes = max_image_bytes

    def server_metadata(self) -> ServerMetadata:
        return self.server

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.models.ready()

    def admission(self) -> AbstractContextManager[object]:
        return self.models.admission()

    def _resolve(self, name: str) -> tuple[str, bool, SppEngine] | None:
        """``(model, classify, engine)`` of protocol model ``name``, or ``None``."""
        for base, classify in ((name, False), (name.removesuffix(CLASSIFY_SUFFIX), True)):
            if classify and not name.endswith(CLASSIFY_SUFFIX):
                continue
            engine = self.models.engine(base)
            if engine is not None:
                return base, classify, engine
        return None

    def model_ready(self, name: str) -> bool:
        found = self._resolve(name)
        return found is not None and found[2].ready()

    def model_metadata(self, name: str) -> ModelMetadata | None:
        found = self._resolve(name)
        if found is None:
            return None
        loaded = found[2].loaded_model()
        versions = (loaded.version,) if loaded is not None else ()
        if not found[1]:
            return ModelMetadata(name, versions, PLATFORM, (IMAGE,), DETECTION_OUTPUTS)
        k = len(loaded.classes) if loaded is not None else -1
        outputs = (
            TensorSpec("PROBABILITIES", "FP32", (k,)),
            TensorSpec("LABELS", "BYTES", (k,)),
        )
        return ModelMetadata(name, versions, PLATFORM, (IMAGE,), outputs)

    def _image(self, inputs: Mapping[str, np.ndarray]) -> bytes:
        image = inputs[IMAGE.name].reshape(-1)[0]
        assert isinstance(image, bytes), "BYTES inputs are decoded to bytes"
        if len(image) > self.max_image_bytes:
            raise OipError(413, f"upload too large: the limit is {self.max_image_bytes} bytes")
        return image

    async def infer(
        self, name: str, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, Any]
    ) -> dict[str, np.ndarray]:
        found = self._resolve(name)
        loaded = found[2].loaded_model() if found is not None else None
        if found is None or loaded is None:
            raise OipError(503, f"model '{name}' is not ready", headers={"Retry-After": "5"})
        _, classify, engine = found
        if classify:
            if parameters:
                raise bad_request(
                    f"model '{name}' takes no parameters, got '{next(iter(parameters))}'"
                )
            predictions = await engine.classify(self._image(inputs))
            return probability_arrays(predictions, loaded.classes)
        params = detect_params(parameters)
        class_ids = resolve_class_ids(params.classes, loaded.classes)
        detections = await engine.detect(self._image(inputs), params, class_ids)
        return detection_arrays(detections)
