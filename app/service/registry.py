"""The loaded models: name -> the :class:`ModelServing` of the version that answers.

``LOAD_MODELS`` (default ``MODEL_NAME`` alone; ``*``: every model of the store) are loaded
at start, in the background, one after another. With ``MODEL_CONTROL=explicit`` the repository
API loads, reloads and unloads them:

- **load** of a model not loaded: read, load, warm up, then it answers;
- **load** of a loaded model (a reload): the new version is read, loaded and warmed up
  *beside* the one serving, then swapped in by one assignment on the event loop; requests
  already holding the old version (:meth:`ModelRegistry.lease`) finish on it, later ones get
  the new one; the old version then drains (its leases reach 0) and is freed. A load that
  fails leaves the serving version in place and answers the reason;
- **unload**: the model leaves the table at once (new requests: 404), its in-flight requests
  finish, then its worker stops and its memory is freed.

Readiness is decided here (:meth:`ModelRegistry.status`), for ``/readyz``, the model routes,
``/v1/models`` and both protocols.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from app.inference.detector import Detector
from app.model.store import MANIFEST_FILE, ModelLoadError, load_model, read_manifest
from app.service.batching import ShuttingDown
from app.service.metrics import ServiceMetrics
from app.service.model_serving import (
    ModelMemory,
    ModelServing,
    cuda_allocated,
    forget_version,
    parameter_bytes,
    release_device_memory,
    report_loaded,
)
from app.service.proposing import Searcher
from app.service.serving_errors import (
    ModelLoadFailed,
    ModelNotLoaded,
    ModelUnavailable,
    UnknownModel,
)
from app.service.settings import Settings
from app.service.stages import SharedStages

logger = logging.getLogger(__name__)

Status = Literal["loading", "ready", "failed", "stopping", "unloaded"]
#: The repository index's states (Triton's names).
IndexState = Literal["READY", "UNAVAILABLE", "LOADING"]
#: ``loader(settings) -> Detector``: blocking, runs in a worker thread; loads
#: ``settings.model_name`` (the registry passes a copy of the settings naming each model).
DetectorLoader = Callable[[Settings], Detector]


def load_detector(settings: Settings) -> Detector:
    """Load ``settings.model_name`` from ``settings.model_store`` onto ``settings.device``.

    Raises:
        ModelLoadError: the manifest or weights are missing, invalid or tampered with.
    """
    model = load_model(settings.model_store, settings.model_name, device="cpu")
    return Detector(model, device=settings.device, precision=settings.precision)


def store_model_names(store: Path) -> list[str]:
    """Folder names of the store's models (those holding a manifest), sorted."""
    if not store.is_dir():
        return []
    return sorted(p.name for p in store.iterdir() if (p / MANIFEST_FILE).is_file())


@dataclass
class ModelEntry:
    """What the registry knows of one model name."""

    status: Status
    reason: str | None = None
    serving: ModelServing | None = None
    load_error: str | None = None
    """The reason of the last failed (re)load, cleared by a successful one."""


@dataclass(frozen=True)
class IndexEntry:
    """One row of the repository index."""

    name: str
    version: str
    state: IndexState
    reason: str


class ModelRegistry:
    """The loaded models of the process and the stages they share (see the module docstring).

    Args:
        settings: ``MODEL_NAME``, ``LOAD_MODELS``, ``MODEL_STORE``, limits.
        loader: ``settings -> Detector`` (blocking), called with a copy naming each model.
        searcher: see :class:`~app.service.proposing.ProposalStage`.
    """

    def __init__(
        self,
        settings: Settings,
        metrics: ServiceMetrics,
        loader: DetectorLoader = load_detector,
        searcher: Searcher | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.loader = loader
        self.searcher = searcher
        self.stages: SharedStages | None = None
        self.entries: dict[str, ModelEntry] = {
            name: ModelEntry("loading", f"loading model {name!r}") for name in self.startup_names()
        }
        self._locks: dict[str, asyncio.Lock] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self.stopping = False

    def startup_names(self) -> list[str]:
        """``LOAD_MODELS`` resolved (``*``: the store's models), ``MODEL_NAME`` first."""
        wanted = self.settings.load_models or [self.settings.model_name]
        if "*" in wanted:
            wanted = store_model_names(self.settings.model_store)
        names = [self.settings.model_name, *wanted]
        return list(dict.fromkeys(names))

    @property
    def engine(self) -> ModelServing | None:
        """The serving version of ``MODEL_NAME`` (``None`` unless ready)."""
        entry = self.entries.get(self.settings.model_name)
        return entry.serving if entry is not None else None

    def status(self, name: str) -> tuple[Status, str | None]:
        """``(status, reason)`` of model ``name`` (``reason`` is ``None`` when ready)."""
        if self.stopping:
            return "stopping", "the service is shutting down"
        entry = self.entries.get(name)
        if entry is None:
            return "unloaded", f"model {name!r} is not loaded"
        if entry.serving is not None:
            return "ready", None
        return entry.status, entry.reason

    def ready(self, name: str) -> bool:
        """Model ``name`` can answer now."""
        return self.status(name)[0] == "ready"

    def loaded(self) -> dict[str, ModelServing]:
        """Name -> serving version of every ready model."""
        return {n: e.serving for n, e in self.entries.items() if e.serving is not None}

    def serving(self, name: str) -> ModelServing:
        """The version of ``name`` that answers now.

        Raises:
            ShuttingDown: the service is stopping (503).
            ModelNotLoaded: no such model is loaded (404, naming the loaded ones).
            ModelUnavailable: it is loading or failed to load (503 with the reason).
        """
        if self.stopping:
            raise ShuttingDown("the service is shutting down")
        entry = self.entries.get(name)
        if entry is None:
            raise ModelNotLoaded(name, self.loaded())
        if entry.serving is None:
            raise ModelUnavailable(f"model not ready: {entry.reason or entry.status}")
        return entry.serving

    @contextlib.contextmanager
    def lease(self, name: str) -> Iterator[ModelServing]:
        """:meth:`serving` held for a ``with`` block (a swap or unload waits for it)."""
        with self.serving(name).lease() as serving:
            yield serving

    async def start(self) -> None:
        """Build the shared stages, then load every startup model (never raises)."""
        try:
            self.stages = await asyncio.to_thread(self._build_stages)
        except Exception as exc:
            logger.exception("service stages failed to start")
            for entry in self.entries.values():
                entry.status, entry.reason = "failed", f"{type(exc).__name__}: {exc}"
            return
        for name in list(self.entries):
            if self.stopping:
                return
            with contextlib.suppress(ModelLoadFailed):
                await self.load(name)

    def _build_stages(self) -> SharedStages:
        stages = SharedStages(self.settings, self.metrics, self.searcher)
        if self.settings.warm_up:
            try:
                stages.warm_up()
            except BaseException:
                stages.close()
                raise
        return stages

    async def load(self, name: str) -> ModelServing:
        """Load (or reload) ``name`` beside what serves, then swap it in.

        Raises:
            UnknownModel: not in the store and not loaded (404).
            ModelLoadFailed: the load failed; the version serving before still serves.
        """
        if name not in self.entries and name not in store_model_names(self.settings.model_store):
            raise UnknownModel(name)
        async with self._locks.setdefault(name, asyncio.Lock()):
            entry = self.entries.setdefault(name, ModelEntry("loading"))
            if entry.serving is None:
                entry.status, entry.reason = "loading", f"loading model {name!r}"
            started = time.perf_counter()
            try:
                serving = await asyncio.to_thread(self._build, name)
            except Exception as exc:
                raise self._load_failed(name, entry, exc) from None
            if self.stopping:
                await serving.retire(0.0)
                raise ModelLoadFailed("the service is shutting down")
            serving.load_time_s = time.perf_counter() - started
            self._swap_in(name, entry, serving)
            return serving

    def _build(self, name: str) -> ModelServing:
        """Blocking: load ``name`` and warm it up, measuring its memory."""
        settings = self.settings.model_copy(update={"model_name": name})
        device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
        before = cuda_allocated(device)
        detector = self.loader(settings)
        if self.settings.warm_up:
            detector.warm_up()
        after = cuda_allocated(detector.device)
        grown = None if after is None or before is None else max(after - before, 0)
        memory = ModelMemory(parameter_bytes(detector), grown)
        assert self.stages is not None, "the stages are built before any model"
        return ModelServing(detector, self.settings, self.metrics, memory, self.stages.proposals)

    def _load_failed(self, name: str, entry: ModelEntry, exc: Exception) -> ModelLoadFailed:
        """Record a failed load of ``name``; the error to raise."""
        if isinstance(exc, ModelLoadError):
            reason = str(exc)
        else:  # e.g. CUDA requested but absent, out of memory
            logger.exception("model load failed")
            reason = f"{type(exc).__name__}: {exc}"
        entry.load_error = reason
        if entry.serving is None:
            entry.status, entry.reason = "failed", f"model failed to load: {reason}"
            if name == self.settings.model_name:
                self.metrics.model_ready.set(0)
        logger.error("model failed to load", extra={"fields": {"model": name, "reason": reason}})
        return ModelLoadFailed(f"failed to load model {name!r}: {reason}")

    def _swap_in(self, name: str, entry: ModelEntry, serving: ModelServing) -> None:
        """Make ``serving`` the answering version of ``name``; retire the previous one."""
        serving.start()
        old = entry.serving
        entry.serving, entry.status, entry.reason, entry.load_error = serving, "ready", None, None
        report_loaded(self.metrics, serving, default=name == self.settings.model_name)
        if old is not None:
            forget_version(self.metrics, old)
            self._retire_later(old)

    async def _retire(self, serving: ModelServing) -> None:
        await serving.retire(self.settings.request_timeout_s)
        del serving
        await asyncio.to_thread(release_device_memory)

    def _retire_later(self, serving: ModelServing) -> None:
        task = asyncio.get_running_loop().create_task(self._retire(serving), name="model-retire")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def unload(self, name: str) -> None:
        """Take ``name`` out of service; its in-flight requests finish, then it is freed.

        Raises:
            UnknownModel: neither loaded nor in the store (404).
        """
        async with self._locks.setdefault(name, asyncio.Lock()):
            entry = self.entries.pop(name, None)
            if entry is None:
                if name not in store_model_names(self.settings.model_store):
                    raise UnknownModel(name)
                return  # not loaded: nothing to do (as Triton)
            if name == self.settings.model_name:
                self.metrics.model_ready.set(0)
            if entry.serving is not None:
                forget_version(self.metrics, entry.serving)
                for kind in ("parameters", "cuda_allocated"):
                    with contextlib.suppress(KeyError):
                        self.metrics.model_memory.remove(name, kind)
                retiring = self._retire(entry.serving)  # holds the only reference left
                entry.serving = None
                await retiring
            logger.info("model unloaded", extra={"fields": {"model": name}})

    def index(self) -> list[IndexEntry]:
        """Every model of the store and every loaded one, with its state and reason."""
        names = sorted({*store_model_names(self.settings.model_store), *self.entries})
        return [self._index_entry(name) for name in names]

    def _index_entry(self, name: str) -> IndexEntry:
        entry = self.entries.get(name)
        if entry is not None and entry.serving is not None:
            return IndexEntry(name, entry.serving.version, "READY", entry.load_error or "")
        if entry is not None and entry.status == "loading":
            return IndexEntry(name, "", "LOADING", "")
        if entry is not None:
            return IndexEntry(name, "", "UNAVAILABLE", entry.reason or entry.status)
        try:
            version = read_manifest(self.settings.model_store / name).version
        except ModelLoadError as exc:
            return IndexEntry(name, "", "UNAVAILABLE", str(exc))
        return IndexEntry(name, version, "UNAVAILABLE", "unloaded")

    async def stop(self) -> None:
        """Stop taking requests, drain every model, then close the shared stages."""
        self.stopping = True
        self.metrics.model_ready.set(0)
        servings = [e.serving for e in self.entries.values() if e.serving is not None]
        timeout = self.settings.request_timeout_s
        await asyncio.gather(*(s.retire(timeout) for s in servings), *self._retiring)
        if self.stages is not None:
            await asyncio.to_thread(self.stages.close)
