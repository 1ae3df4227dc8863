"""``inference.GRPCInferenceService`` over an :class:`~app.service.oip.backend.InferenceBackend`,
on a ``grpc.aio`` server in the service's own event loop.

Health, readiness and server metadata are open; model metadata and inference need the API key
when one is set, as ``authorization: Bearer <key>`` or ``x-api-key: <key>`` call metadata
(what ``tritonclient.grpc`` sends as ``headers=``). Errors end the call with the gRPC status
of :func:`~app.service.oip.protocol_errors.grpc_code` and the protocol's message as details.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc import aio

from app.service.oip.backend import InferenceBackend, resolve_model, run_inference
from app.service.oip.protocol_errors import ErrorTranslator, OipError, grpc_code, no_translation
from app.service.oip.grpc_codec import request_from_proto, response_to_proto
from app.service.oip.protocol import SERVICE_NAME, Protocol, load_protocol

logger = logging.getLogger(__name__)
#: Largest gRPC message in either direction by default (an image with headroom), in bytes.
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def presented_key(metadata: tuple[tuple[str, str | bytes], ...]) -> str | None:
    """The API key in call metadata: ``authorization: Bearer <key>`` or ``x-api-key``."""
    values = {key.lower(): value for key, value in metadata if isinstance(value, str)}
    scheme, _, credentials = values.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return values.get("x-api-key") or None


class OipServicer:
    """The six RPCs; each returns the response message or aborts the call with the error."""

    def __init__(
        self,
        backend: InferenceBackend,
        protocol: Protocol,
        *,
        translate_error: ErrorTranslator = no_translation,
        api_key: str | None = None,
    ) -> None:
        self.backend = backend
        self.protocol = protocol
        self.translate_error = translate_error
        self.api_key = api_key

    def _check_key(self, context: aio.ServicerContext) -> None:
        if self.api_key is None:
            return
        key = presented_key(tuple(context.invocation_metadata() or ()))
        if key is None:
            raise OipError(401, "missing API key")
        if not hmac.compare_digest(key.encode("utf-8"), self.api_key.encode("utf-8")):
            raise OipError(401, "invalid API key")

    async def _answer(
        self, context: aio.ServicerContext, work: Callable[[], Awaitable[Any]]
    ) -> Any:
        """``await work()``, or abort the call with the protocol error it raised."""
        try:
            return await work()
        except OipError as exc:
            error = exc
        except Exception as exc:
            translated = self.translate_error(exc)
            if translated is None:
                logger.exception("gRPC inference failed")
                translated = OipError(500, "inference failed")
            error = translated
        await context.abort(grpc_code(error.status_code), error.message)

    async def ServerLive(self, request: Any, context: aio.ServicerContext) -> Any:
        return self.protocol.message("ServerLiveResponse")(live=self.backend.live())

    async def ServerReady(self, request: Any, context: aio.ServicerContext) -> Any:
        return self.protocol.message("ServerReadyResponse")(ready=self.backend.ready())

    async def ModelReady(self, request: Any, context: aio.ServicerContext) -> Any:
        async def work() -> Any:
            resolve_model(self.backend, request.name, request.version)
            ready = self.backend.model_ready(request.name)
            return self.protocol.message("ModelReadyResponse")(ready=ready)

        return await self._answer(context, work)

    async def ServerMetadata(self, request: Any, context: aio.ServicerContext) -> Any:
        meta = self.backend.server_metadata()
        return self.protocol.message("ServerMetadataResponse")(
            name=meta.name, version=meta.version, extensions=list(meta.extensions)
        )

    async def ModelMetadata(self, request: Any, context: aio.ServicerContext) -> Any:
        async def work() -> Any:
            self._check_key(context)
            model = resolve_model(self.backend, request.name, request.version)
            answer = self.protocol.message("ModelMetadataResponse")(
                name=model.name, versions=list(model.versions), platform=model.platform
            )
            for specs, field in ((model.inputs, answer.inputs), (model.outputs, answer.outputs)):
                for spec in specs:
                    field.add(name=spec.name, datatype=spec.datatype, shape=list(spec.shape))
            return answer

        return await self._answer(context, work)

    async def ModelInfer(self, request: Any, context: aio.ServicerContext) -> Any:
        async def work() -> Any:
            self._check_key(context)
            resolve_model(self.backend, request.model_name, request.model_version)
            infer_request = request_from_proto(request)
            model, outputs = await run_inference(
                self.backend, request.model_name, request.model_version, infer_request
            )
            version = request.model_version or (model.versions[0] if model.versions else "")
            return response_to_proto(
                self.protocol, request.model_name, version, request.id, outputs
            )

        return await self._answer(context, work)


def service_handler(servicer: OipServicer) -> grpc.GenericRpcHandler:
    """The servicer's methods as the protocol's unary RPCs, (de)serialized by its messages."""
    protocol = servicer.protocol
    handlers = {}
    for method in protocol.service.methods:
        request_class = protocol.message(method.input_type.name)
        response_class = protocol.message(method.output_type.name)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            getattr(servicer, method.name),
            request_deserializer=request_class.FromString,
            response_serializer=response_class.SerializeToString,
        )
    return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)


class OipGrpcServer:
    """The protocol's gRPC server on ``host:port`` (``port`` 0: any free port).

    ``await start()`` binds and serves from the running event loop and returns the bound
    port; ``await stop(grace_s)`` refuses new calls and lets running ones finish.
    """

    def __init__(
        self,
        backend: InferenceBackend,
        *,
        host: str = "0.0.0.0",
        port: int = 8081,
        translate_error: ErrorTranslator = no_translation,
        api_key: str | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.address = f"{host}:{port}"
        self.servicer = OipServicer(
            backend, load_protocol(), translate_error=translate_error, api_key=api_key
        )
        self.options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            # gRPC sets SO_REUSEPORT by default on Linux: a second server on a taken port would
            # bind and silently share its calls instead of failing to start.
            ("grpc.so_reuseport", 0),
        ]
        self.server: aio.Server | None = None

    async def start(self) -> int:
        """Bind and start serving; returns the bound port."""
        server = aio.server(options=self.options)
        server.add_generic_rpc_handlers((service_handler(self.servicer),))
        port = server.add_insecure_port(self.address)
        await server.start()
        self.server = server
        logger.info("gRPC server listening", extra={"fields": {"address": self.address}})
        return port

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop taking calls; running ones get ``grace_s`` seconds (``None``: no limit)."""
        if self.server is not None:
            await self.server.stop(grace_s)
            self.server = None
