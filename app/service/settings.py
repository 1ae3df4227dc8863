"""Settings: the one place environment variables (or a ``.env``) are read.

Every field is an environment variable of the same name in capitals (``MODEL_NAME``,
``MAX_UPLOAD_MB``, ...). Nothing here is read at import time: :func:`app.service.factory.
create_app` builds one :class:`Settings` and hands it down. The ``spp`` CLI reads only
:class:`StoreSettings` (``MODEL_STORE``), the part it shares with the service, so the two
agree on where models are without the CLI depending on the service's other variables.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

import app as app_package
from app.model.store import DEFAULT_MODEL_NAME

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


def default_model_store() -> Path:
    """``model_store/`` next to the ``app`` package (the repository root, or the image's
    install directory when the package is installed in editable mode or copied alongside)."""
    return Path(app_package.__file__).resolve().parents[1] / "model_store"


def default_proposal_workers() -> int:
    """Number of CPU cores this process may use (its affinity mask, not the host's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class StoreSettings(BaseSettings):
    """Where models are: ``MODEL_STORE``, shared by the service and the ``spp`` CLI."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        protected_namespaces=(),
    )

    model_store: Path = Field(default_factory=default_model_store)
    """Directory holding ``<model_name>/manifest.json`` and its weights."""


class Settings(StoreSettings):
    """Configuration of the HTTP service (documented in the README's settings table)."""

    model_name: str = DEFAULT_MODEL_NAME
    """Directory name of the model under ``model_store`` (no path separators)."""
    device: str = Field(default="auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``."""
    precision: Literal["float32", "bfloat16", "float16"] = "float32"
    """Convolutions and fc6/fc7 in this type (``torch.autocast``); ``float16`` needs CUDA."""
    max_upload_mb: float = Field(default=20.0, gt=0, le=1024)
    """Largest accepted image upload, in MiB; enforced while the body is read."""
    max_pixels: int = Field(default=40_000_000, ge=256)
    """Largest accepted ``width * height``, checked on the header before decoding."""
    queue_size: int = Field(default=16, ge=1, le=10_000)
    """Model requests (detect/classify) held at once, waiting or running; more -> 503."""
    request_timeout_s: float = Field(default=30.0, gt=0)
    """Deadline of a model request from its arrival; past it -> 504."""
    api_key: SecretStr | None = None
    """When set, model routes need ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""
    cors_origins: Annotated[list[str], NoDecode] = []
    """Comma-separated origins allowed by CORS; empty = CORS off."""
    log_level: LogLevel = "INFO"
    max_batch_size: int = Field(default=8, ge=1, le=256)
    """Most requests the inference worker puts in one ``Detector.detect`` call."""
    batch_wait_ms: float = Field(default=5.0, ge=0, le=1000)
    """How long the worker waits for more requests after the first of a batch."""
    proposal_workers: int = Field(default_factory=default_proposal_workers, ge=1, le=256)
    """Processes of the selective-search pool shared by all requests (its jobs run there), and
    threads for decoding, hashing and drawing (default: the usable cores)."""
    proposal_cache_size: int = Field(default=64, ge=0, le=100_000)
    """Selective-search results kept in memory (LRU, keyed by the decoded pixels); 0 = off."""
    warm_up: bool = True
    """Run one inference after loading, before reporting ready."""
    grpc_port: int = Field(default=8081, ge=0, le=65535)
    """Port of the Open Inference Protocol's gRPC server, in the same process; 0 turns it off."""
    grpc_host: str = "127.0.0.1"
    """Interface the gRPC server binds (loopback by default; ``0.0.0.0`` for every interface)."""
    load_models: Annotated[list[str], NoDecode] = []
    """Comma-separated model names loaded at start, ``*`` for every model in the store;
    empty: ``MODEL_NAME`` alone. ``MODEL_NAME`` is always among them."""
    model_control: Literal["none", "explicit"] = "none"
    """``none``: the loaded set is fixed at start; ``explicit``: models are loaded, reloaded
    and unloaded through the repository API (``/v2/repository/...``)."""

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("load_models", mode="before")
    @classmethod
    def _split_models(cls, value: object) -> object:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @field_validator("model_control", mode="before")
    @classmethod
    def _lower_control(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def max_upload_bytes(self) -> int:
        """``max_upload_mb`` in bytes."""
        return int(self.max_upload_mb * 1024 * 1024)
