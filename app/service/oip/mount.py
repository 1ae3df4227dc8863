"""The Open Inference Protocol on this service: the v2 HTTP routes on the app, and the gRPC
server (``GRPC_HOST:GRPC_PORT``; port 0 turns it off) started and stopped by the app's lifespan,
in the same process and event loop, over the same :class:`~app.service.registry.ModelRegistry`.

Both transports share the service's limits: ``IMAGE`` up to ``MAX_UPLOAD_MB`` (413), the HTTP
body up to that in base64 plus the JSON around it, ``API_KEY`` for model metadata, inference
and the repository extension (health and readiness stay open, as for ``/readyz``), and the
error table of :mod:`app.service.error_answers`. Under ``uvicorn --workers N`` every worker
serves gRPC on the same port (:mod:`app.service.oip.port_sharing`).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI

from app.service.deps import ApiKeyDep
from app.service.error_answers import oip_error_translator
from app.service.metrics import ServiceMetrics
from app.service.oip.grpc_server import OipGrpcServer
from app.service.oip.http import create_oip_router
from app.service.oip.messages import EXTENSIONS
from app.service.oip.port_sharing import GrpcPortTaken, port_claim, release_port
from app.service.oip.service_models import RegistryModels, RegistryRepository
from app.service.oip.spp_backend import SppBackend
from app.service.registry import ModelRegistry
from app.service.settings import Settings

logger = logging.getLogger(__name__)
#: Room for the JSON (or the binary header) around the image in a request, in bytes.
ENVELOPE_BYTES = 64 * 1024
#: The repository extension's name in ``GET /v2``'s extensions (Triton's).
REPOSITORY_EXTENSION = "model_repository"


def max_http_body_bytes(max_image_bytes: int) -> int:
    """Largest v2 HTTP request body: the image in base64 (4 bytes per 3) and its envelope."""
    return -(-max_image_bytes // 3) * 4 + ENVELOPE_BYTES


class OipMount:
    """The protocol's two transports over one service.

    Args:
        registry: the service's models.
        settings: the service's settings (limits, ``api_key``, ``grpc_host``, ``grpc_port``).
        metrics: where rejections and gRPC calls are counted.
        server_version: reported by ``GET /v2`` and ``ServerMetadata``.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        settings: Settings,
        metrics: ServiceMetrics,
        *,
        server_version: str,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.translate = oip_error_translator(settings, metrics)
        self.repository = RegistryRepository(registry)
        self.backend = SppBackend(
            RegistryModels(registry),
            server_version=server_version,
            max_image_bytes=settings.max_upload_bytes,
            extensions=(*EXTENSIONS, REPOSITORY_EXTENSION),
        )
        self.grpc: OipGrpcServer | None = None
        self.grpc_port: int | None = None
        """The bound gRPC port while serving (``None``: off or stopped)."""

    def include_routes(self, app: FastAPI) -> None:
        """Add the v2 HTTP routes to ``app``."""
        router = create_oip_router(
            self.backend,
            max_body_bytes=max_http_body_bytes(self.settings.max_upload_bytes),
            translate_error=self.translate,
            dependencies=[ApiKeyDep],
            repository=self.repository,
        )
        app.include_router(router)

    def _observe_call(self, rpc: str, model: str, status: str, seconds: float) -> None:
        self.metrics.observe_request(
            route=rpc, method="grpc", status=status, duration_s=seconds, model=model,
            protocol="grpc",
        )  # fmt: skip

    async def start_grpc(self) -> None:
        """Start the gRPC server on ``GRPC_HOST:GRPC_PORT`` unless the port is 0.

        Raises:
            GrpcPortTaken: the port is held by another server (a deployment error, not a
                degraded mode); the sibling workers of this server share it.
        """
        host, port = self.settings.grpc_host, self.settings.grpc_port
        if port == 0:
            return
        key = self.settings.api_key
        with port_claim(host, port) as share:
            server = OipGrpcServer(
                self.backend,
                host=host,
                port=port,
                translate_error=self.translate,
                api_key=key.get_secret_value() if key is not None else None,
                max_message_bytes=self.settings.max_upload_bytes + ENVELOPE_BYTES,
                repository=self.repository,
                observe=self._observe_call,
                reuse_port=share,
            )
            try:
                self.grpc_port = await server.start()
            except RuntimeError as exc:
                raise GrpcPortTaken(f"{host}:{port}") from exc
        self.grpc = server

    async def stop_grpc(self) -> None:
        """Refuse new calls; calls in progress get up to ``REQUEST_TIMEOUT_S`` to finish."""
        if self.grpc is not None:
            await self.grpc.stop(grace_s=self.settings.request_timeout_s)
            release_port(self.settings.grpc_host, self.settings.grpc_port)
            self.grpc, self.grpc_port = None, None
