"""FastAPI dependencies: settings, service state, the inference engine / detector, API-key auth.

Routes take these through the ``Annotated`` aliases (``EngineDep``, ``DetectorDep``, ...);
tests override the underlying functions with ``app.dependency_overrides``.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from app.inference.detector import Detector
from app.service.engine import InferenceEngine
from app.service.metrics import ServiceMetrics
from app.service.settings import Settings
from app.service.state import ServiceState


def get_state(request: Request) -> ServiceState:
    """The app's :class:`ServiceState` (created by ``create_app``)."""
    state: ServiceState = request.app.state.service
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]


def get_settings(state: StateDep) -> Settings:
    """The app's settings."""
    return state.settings


def get_metrics(state: StateDep) -> ServiceMetrics:
    """The app's metrics."""
    return state.metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]


def get_engine(state: StateDep) -> InferenceEngine:
    """The ready inference engine, or 503 with the reason the model is not ready."""
    if state.status != "ready" or state.engine is None:
        raise HTTPException(
            503, f"model not ready: {state.reason or state.status}", headers={"Retry-After": "5"}
        )
    return state.engine


EngineDep = Annotated[InferenceEngine, Depends(get_engine)]


def get_detector(engine: EngineDep) -> Detector:
    """The loaded detector (503 until it is ready)."""
    return engine.detector


DetectorDep = Annotated[Detector, Depends(get_detector)]


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
