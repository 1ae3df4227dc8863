"""FastAPI dependencies: the model registry, settings, metrics, API-key auth.

Routes take these through the ``Annotated`` aliases (``RegistryDep``, ``SettingsDep``, ...);
tests override the underlying functions with ``app.dependency_overrides``.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from app.service.metrics import ServiceMetrics
from app.service.registry import ModelRegistry
from app.service.settings import Settings


def get_registry(request: Request) -> ModelRegistry:
    """The app's :class:`ModelRegistry` (created by ``create_app``)."""
    registry: ModelRegistry = request.app.state.service
    return registry


RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]


def get_settings(registry: RegistryDep) -> Settings:
    """The app's settings."""
    return registry.settings


def get_metrics(registry: RegistryDep) -> ServiceMetrics:
    """The app's metrics."""
    return registry.metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]


def _presented_key(request: Request) -> str | None:
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    return request.headers.get("x-api-key") or None


def require_api_key(request: Request, settings: SettingsDep) -> None:
    """When ``API_KEY`` is set, demand it as ``Authorization: Bearer`` or ``X-API-Key``.

    The comparison is constant-time (``hmac.compare_digest``). Answers 401 with
    ``WWW-Authenticate: Bearer`` when the key is missing or wrong.
    """
    if settings.api_key is None:
        return
    presented = _presented_key(request)
    challenge = {"WWW-Authenticate": "Bearer"}
    if presented is None:
        raise HTTPException(401, "missing API key", headers=challenge)
    expected = settings.api_key.get_secret_value().encode("utf-8")
    if not hmac.compare_digest(presented.encode("utf-8"), expected):
        raise HTTPException(401, "invalid API key", headers=challenge)


ApiKeyDep = Depends(require_api_key)
