"""The service as a Ray Serve application: ``serve run app.deploy.ray_serve:app``.

Each replica is one whole service process (``app.service.factory.create_app``: its own model,
batching worker and CPU pool) on one GPU; Ray's HTTP proxy spreads requests over the replicas
and adds replicas when each holds more than ``TARGET_ONGOING_REQUESTS`` (default
``MAX_BATCH_SIZE``: beyond it, requests wait for the next batch anyway).

- A replica counts as started only once ``/readyz`` says ready (model loaded and warm), so the
  proxy never sends it a request it would answer 503; a model that fails to load fails the
  replica's start, and Ray retries it.
- Ray's periodic health check asks ``/readyz`` too: a replica that stops being ready is
  replaced.
- Shutdown runs the app's lifespan exit (drain the inference queue); Ray waits
  ``2 x REQUEST_TIMEOUT_S + 5`` seconds for it (in-flight requests, then the queue).

Everything the service answers over HTTP goes through Ray's proxy, the Open Inference
Protocol's ``/v2`` routes included; the replicas' own gRPC server is off (``GRPC_PORT`` 0 by
default here), since the proxy carries HTTP.

Configuration is the service's (``MODEL_NAME``, ``DEVICE``, ... from the environment) plus the
fields of :class:`RayServeSettings`; ``serve run app.deploy.ray_serve:app max_replicas=4`` sets
one on the command line. The settings are read once, in the process that builds the
application, and handed to every replica, so replicas on other nodes need no environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, MutableMapping
from typing import Any, cast

from fastapi import FastAPI
from pydantic import Field
from ray import serve
from ray.serve import Application

from app.service.factory import create_app
from app.service.settings import Settings

logger = logging.getLogger(__name__)
#: Longest a replica may take to load and warm its model before its start counts as failed.
READY_TIMEOUT_S = 600.0
HEALTH_CHECK_PERIOD_S = 10.0


class RayServeSettings(Settings):
    """The service's settings plus the Ray Serve deployment's (environment variables of the
    same names in capitals, or ``key=value`` arguments of ``serve run``)."""

    replica_gpus: float | None = Field(default=None, ge=0)
    """GPUs per replica; default 1, or 0 when ``DEVICE`` is ``cpu``."""
    replica_cpus: float = Field(default=1.0, ge=0)
    """CPUs Ray reserves per replica (selective search uses ``PROPOSAL_WORKERS`` threads)."""
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=1, ge=1)
    target_ongoing_requests: float | None = Field(default=None, gt=0)
    """Requests per replica the autoscaler aims at; default ``MAX_BATCH_SIZE``."""
    grpc_port: int = Field(default=0, ge=0, le=65535)
    """The replicas' own gRPC server: off by default, as Ray's proxy carries HTTP only and
    replicas sharing a node cannot share a port."""

    def gpus_per_replica(self) -> float:
        """``replica_gpus``, or its default for ``device``."""
        if self.replica_gpus is not None:
            return self.replica_gpus
        return 0.0 if self.device == "cpu" else 1.0

    def service_settings(self) -> dict[str, Any]:
        """The fields of :class:`Settings` (secrets included, as objects), for the replicas."""
        return {name: getattr(self, name) for name in Settings.model_fields}


async def asgi_get(app: FastAPI, path: str) -> tuple[int, bytes]:
    """``GET path`` on ``app`` in-process (no socket): (status, body)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [],
        "client": ("127.0.0.1", 0),
        "server": ("127.0.0.1", 0),
    }
    status = 500
    body = bytearray()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))

    await app(scope, receive, send)
    return status, bytes(body)


async def wait_until_ready(app: FastAPI, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Poll ``/readyz`` until 200.

    Raises:
        RuntimeError: the model failed to load, or is still not ready after ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        status, body = await asgi_get(app, "/readyz")
        if status == 200:
            return
        answer = json.loads(body or b"{}")
        if answer.get("status") == "failed" or time.monotonic() > deadline:
            raise RuntimeError(f"replica not ready: {answer.get('reason') or answer}")
        await asyncio.sleep(0.2)


def ready_before_serving(app: FastAPI) -> FastAPI:
    """``app`` whose lifespan start returns only once ``/readyz`` is 200 (the app's own start
    loads the model in the background and returns at once)."""
    started = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(application: FastAPI) -> AsyncIterator[Any]:
        async with started(application) as state:
            await wait_until_ready(application)
            yield state

    app.router.lifespan_context = lifespan
    return app


@serve.deployment(name="spp-service", health_check_period_s=HEALTH_CHECK_PERIOD_S)
@serve.ingress()
class SppService:
    """One replica: the whole FastAPI service, built in the replica's process."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = Settings(_env_file=None, **settings)  # type: ignore[call-arg]
        self.service: FastAPI | None = None  # ``app`` is Ray's name for the ASGI app

    def __serve_build_asgi_app__(self) -> FastAPI:
        self.service = ready_before_serving(create_app(self.settings))
        return self.service

    async def check_health(self) -> None:
        """Ray's health check: ``/readyz`` must answer 200."""
        if self.service is None:
            return  # still being built; Ray waits for the constructor first
        status, body = await asgi_get(self.service, "/readyz")
        if status != 200:
            raise RuntimeError(f"/readyz answered {status}: {body.decode(errors='replace')}")


def build_app(args: dict[str, str] | None = None) -> Application:
    """The application ``serve run`` starts: :class:`SppService` with the replicas, resources
    and autoscaling of :class:`RayServeSettings` (``args``: ``key=value`` from the command
    line, over the environment)."""
    settings = RayServeSettings(**cast(dict[str, Any], args or {}))
    target = settings.target_ongoing_requests or float(settings.max_batch_size)
    deployment = SppService.options(  # type: ignore[attr-defined]
        ray_actor_options={
            "num_gpus": settings.gpus_per_replica(),
            "num_cpus": settings.replica_cpus,
        },
        autoscaling_config={
            "min_replicas": settings.min_replicas,
            "max_replicas": max(settings.max_replicas, settings.min_replicas),
            "target_ongoing_requests": target,
        },
        max_ongoing_requests=settings.queue_size,
        graceful_shutdown_timeout_s=2 * settings.request_timeout_s + 5,
        health_check_timeout_s=30.0,
    )
    return deployment.bind(settings.service_settings())


#: ``serve run app.deploy.ray_serve:app`` (Ray calls it with the command line's arguments).
app = build_app
