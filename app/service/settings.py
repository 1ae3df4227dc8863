"""Service settings: one pydantic-settings class read from the environment (or a ``.env``).

Every field is an environment variable of the same name in capitals (``MODEL_NAME``,
``MAX_UPLOAD_MB``, ...). Nothing here is read at import time: :func:`app.service.factory.
create_app` builds one :class:`Settings` and hands it down.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

import app as app_package

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


class Settings(BaseSettings):
    """Configuration of the HTTP service (documented in the README's settings table)."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        protected_namespaces=(),
    )

    model_name: str = "zf5-shapes"
    """Directory name of the model under ``model_store`` (no path separators)."""
    model_store: Path = Field(default_factory=default_model_store)
    """Directory holding ``<model_name>/manifest.json`` and its weights."""
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
    """Threads for decoding and selective search (OpenCV releases the GIL)."""
    warm_up: bool = True
    """Run one inference after loading, before reporting ready."""

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

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def max_upload_bytes(self) -> int:
        """``max_upload_mb`` in bytes."""
        return int(self.max_upload_mb * 1024 * 1024)
