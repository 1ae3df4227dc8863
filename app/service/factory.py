"""``create_app``: settings, lifespan (load + warm-up of every model of ``LOAD_MODELS`` in the
background, the Open Inference Protocol's gRPC server, drain on exit), middleware, error
handlers, routers (the v2 routes included) and the static web page."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from app.service.error_answers import install_error_handlers
from app.service.logs import configure_logging
from app.service.metrics import ServiceMetrics
from app.service.middleware import REQUEST_ID_HEADER, RequestContextMiddleware
from app.service.oip.mount import OipMount
from app.service.proposing import Searcher
from app.service.registry import DetectorLoader, ModelRegistry, load_detector
from app.service.routes import classify, detect, health, models
from app.service.settings import Settings

logger = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).parent / "static"
#: The installed distribution whose version the service reports.
DISTRIBUTION = "spp-service"


def service_version() -> str:
    """The installed ``spp-service`` package's version (``0+unknown`` when not installed)."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def _log_start(settings: Settings, registry: ModelRegistry) -> None:
    logger.info(
        "starting",
        extra={
            "fields": {
                "model": settings.model_name,
                "load_models": registry.startup_names(),
                "model_control": settings.model_control,
                "model_store": str(settings.model_store),
                "device": settings.device,
                "auth": settings.api_key is not None,
            }
        },
    )


def create_app(
    settings: Settings | None = None,
    *,
    detector_loader: DetectorLoader = load_detector,
    searcher: Searcher | None = None,
) -> FastAPI:
    """Build the service.

    Args:
        settings: defaults to ``Settings()`` read from the environment.
        detector_loader: blocking ``settings -> Detector`` of ``settings.model_name`` (called
            once per model with a copy of the settings naming it); tests pass a tiny model's.
        searcher: ``(image, config) -> every proposal before the cap``, run in the CPU
            threads instead of selective search on the process pool (tests, benchmarks);
            ``None``: the pool of ``PROPOSAL_WORKERS`` processes, made in the lifespan.

    Nothing is loaded here: the lifespan starts loading the models in the background and yields
    at once, so ``/healthz`` answers while ``/readyz`` is 503 until ``MODEL_NAME`` is warm; it
    also starts the gRPC server on ``GRPC_HOST:GRPC_PORT`` (unless the port is 0; a port taken
    by another server fails the start). On exit it stops the gRPC server (calls in progress
    finish), stops taking model requests and finishes the queued ones.
    """
    settings = settings or Settings()
    metrics = ServiceMetrics()
    service = ModelRegistry(settings, metrics, detector_loader, searcher)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.log_level)
        _log_start(settings, service)
        loading = asyncio.create_task(service.start(), name="model-load")
        try:
            await oip.start_grpc()
            yield
        finally:
            logger.info("stopping: draining in-flight requests")
            await oip.stop_grpc()
            await service.stop()
            if not loading.done():
                await loading  # a thread cannot be cancelled; let the load finish and clean up
            logger.info("stopped")

    app = FastAPI(
        title="SPP-net detection service",
        summary="ZF-5 SPP-net object detection: selective search, pyramid pooling, SVMs.",
        version=service_version(),
        lifespan=lifespan,
    )
    app.state.service = service
    oip = OipMount(service, settings, metrics, server_version=app.version)
    app.state.oip = oip
    install_error_handlers(app, settings, metrics)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", REQUEST_ID_HEADER],
            expose_headers=[REQUEST_ID_HEADER, "Server-Timing"],
        )
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    for router in (detect.router, classify.router, models.router, health.router):
        app.include_router(router)
    oip.include_routes(app)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
