"""The Open Inference Protocol on this service: the v2 HTTP routes on the app, and the gRPC
server (``GRPC_PORT``; 0 turns it off) started and stopped by the app's lifespan, in the same
process and event loop, over the same :class:`~app.service.state.ServiceState`.

Both transports share the service's limits: ``IMAGE`` up to ``MAX_UPLOAD_MB`` (413), the HTTP
body up to that in base64 plus the JSON around it, ``API_KEY`` for model metadata and
inference (health and readiness stay open, as for ``/readyz``), and the error table of
:mod:`app.service.error_answers`.
"""

from __future__ import annotations

import logging

from fastapi import Depends, FastAPI

from app.service.deps import ApiKeyDep
from app.service.error_answers import oip_error_translator
from app.service.metrics import ServiceMetrics
from app.service.oip.grpc_server import OipGrpcServer
from app.service.oip.http import create_oip_router
from app.service.oip.service_engine import ServiceEngine, record_timings
from app.service.oip.spp_backend import SppBackend
from app.service.settings import Settings
from app.service.state import ServiceState

logger = logging.getLogger(__name__)
#: Room for the JSON (or the binary header) around the image in a request, in bytes.
ENVELOPE_BYTES = 64 * 1024


def max_http_body_bytes(max_image_bytes: int) -> int:
    """Largest v2 HTTP request body: the image in base64 (4 bytes per 3) and its envelope."""
    return -(-max_image_bytes // 3) * 4 + ENVELOPE_BYTES


class OipMount:
    """The protocol's two transports over one service.

    Args:
        state: the service whose model answers.
        settings: the service's settings (``model_name``, limits, ``api_key``, ``grpc_port``).
        metrics: where rejections are counted.
        server_version: reported by ``GET /v2`` and ``ServerMetadata``.
    """

    def __init__(
        self,
        state: ServiceState,
        settings: Settings,
        metrics: ServiceMetrics,
        *,
        server_version: str,
        grpc_host: str = "0.0.0.0",
    ) -> None:
        self.settings = settings
        self.translate = oip_error_translator(settings, metrics)
        self.backend = SppBackend(
            ServiceEngine(state),
            model_name=settings.model_name,
            server_version=server_version,
            max_image_bytes=settings.max_upload_bytes,
        )
        self.grpc_host = grpc_host
        self.grpc: OipGrpcServer | None = None
        self.grpc_port: int | None = None
        """The bound gRPC port while serving (``None``: off or stopped)."""

    def include_routes(self, app: FastAPI) -> None:
        """Add the v2 HTTP routes to ``app``."""
        router = create_oip_router(
            self.backend,
            max_body_bytes=max_http_body_bytes(self.settings.max_upload_bytes),
            translate_error=self.translate,
            dependencies=[ApiKeyDep, Depends(record_timings)],
        )
        app.include_router(router)

    async def start_grpc(self) -> None:
        """Start the gRPC server on ``GRPC_PORT`` unless it is 0 (raises when the port is
        taken: a second server on one port is a deployment error, not a degraded mode)."""
        if self.settings.grpc_port == 0:
            return
        key = self.settings.api_key
        server = OipGrpcServer(
            self.backend,
            host=self.grpc_host,
            port=self.settings.grpc_port,
            translate_error=self.translate,
            api_key=key.get_secret_value() if key is not None else None,
            max_message_bytes=self.settings.max_upload_bytes + ENVELOPE_BYTES,
        )
        self.grpc_port = await server.start()
        self.grpc = server

    async def stop_grpc(self) -> None:
        """Refuse new calls; calls in progress get up to ``REQUEST_TIMEOUT_S`` to finish."""
        if self.grpc is not None:
            await self.grpc.stop(grace_s=self.settings.request_timeout_s)
            self.grpc, self.grpc_port = None, None
