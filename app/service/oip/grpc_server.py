"""``inference.GRPCInferenceService`` over an :class:`~app.service.oip.backend.InferenceBackend`,
on a ``grpc.aio`` server in the service's own event loop.

Health, readiness and server metadata are open; model metadata, inference and the repository
extension (``RepositoryIndex``, ``RepositoryModelLoad``, ``RepositoryModelUnload``, when a
repository is given) need the API key when one is set, as ``authorization: Bearer <key>``
or ``x-api-key: <key>`` call metadata (what ``tritonclient.grpc`` sends as ``headers=``).
Errors end the call with the gRPC status
of :func:`~app.service.oip.protocol_errors.grpc_code` and the protocol's message as details.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc import aio

from app.service.oip.backend import (
    InferenceBackend,
    ModelRepository,
    check_load_parameters,
    resolve_model,
    run_inference,
)
from app.service.oip.grpc_codec import request_from_proto, response_to_proto
from app.service.oip.protocol import SERVICE_NAME, Protocol, load_protocol
from app.service.oip.protocol_errors import ErrorTranslator, OipError, grpc_code, no_translation

logger = logging.getLogger(__name__)
#: ``observer(rpc, model, status, seconds)``: called once per finished call (``status``: the
#: gRPC status code's name, ``OK`` on success; ``model``: empty for calls naming none).
CallObserver = Callable[[str, str, str, float], None]


def _ignore_call(rpc: str, model: str, status: str, seconds: float) -> None:
    """The default :data:`CallObserver`."""


#: Largest gRPC message in either direction by default (an image with headroom), in bytes.
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def presented_key(metadata: tuple[tuple[str, str | bytes], ...]) -> str | None:
    """The API key in call metadata: ``authorization: Bearer <key>`` or ``x-api-key``."""
    values = {key.lower(): value for key, value in metadata if isinstance(value, str)}
    scheme, _, credentials = values.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return values.get("x-api-key") or None


class OipServicer:  # long: one method per RPC of the protocol
    """The RPCs; each returns the response message or aborts the call with the error."""

    def __init__(
        self,
        backend: InferenceBackend,
        protocol: Protocol,
        *,
        translate_error: ErrorTranslator = no_translation,
        api_key: str | None = None,
        repository: ModelRepository | None = None,
        observe: CallObserver = _ignore_call,
    ) -> None:
        self.backend = backend
        self.protocol = protocol
        self.translate_error = translate_error
        self.api_key = api_key
        self.repository = repository
        self.observe = observe

    def _check_key(self, context: aio.ServicerContext) -> None:
        if self.api_key is None:
            return
        key = presented_key(tuple(context.invocation_metadata() or ()))
        if key is None:
            raise OipError(401, "missing API key")
        if not hmac.compare_digest(key.encode("utf-8"), self.api_key.encode("utf-8")):
            raise OipError(401, "invalid API key")

    async def _answer(
        self,
        context: aio.ServicerContext,
        work: Callable[[], Awaitable[Any]],
        rpc: str = "",
        model: str = "",
    ) -> Any:
        """``await work()``, or abort the call with the protocol error it raised; the call is
        reported to the observer when ``rpc`` is named."""
        started = time.perf_counter()
        try:
            answer = await work()
        except OipError as exc:
            error = exc
        except Exception as exc:
            translated = self.translate_error(exc)
            if translated is None:
                logger.exception("gRPC inference failed")
                translated = OipError(500, "inference failed")
            error = translated
        else:
            if rpc:
                self.observe(rpc, model, "OK", time.perf_counter() - started)
            return answer
        code = grpc_code(error.status_code)
        if rpc:
            self.observe(rpc, model, code.name, time.perf_counter() - started)
        await context.abort(code, error.message)

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
            with self.backend.admission():
                infer_request = request_from_proto(request)
                model, outputs = await run_inference(
                    self.backend, request.model_name, request.model_version, infer_request
                )
            version = request.model_version or (model.versions[0] if model.versions else "")
            return response_to_proto(
                self.protocol, request.model_name, version, request.id, outputs
            )

        return await self._answer(context, work, "ModelInfer", request.model_name)

    def _repository(self) -> ModelRepository:
        if self.repository is None:
            raise OipError(501, "this server has no model repository extension")
        return self.repository

    async def RepositoryIndex(self, request: Any, context: aio.ServicerContext) -> Any:
        async def work() -> Any:
            self._check_key(context)
            answer = self.protocol.message("RepositoryIndexResponse")()
            for model in self._repository().index():
                if request.ready and model.state != "READY":
                    continue
                answer.models.add(
                    name=model.name, version=model.version, state=model.state, reason=model.reason
                )
            return answer

        return await self._answer(context, work, "RepositoryIndex")

    async def RepositoryModelLoad(self, request: Any, context: aio.ServicerContext) -> Any:
        async def work() -> Any:
            self._check_key(context)
            check_load_parameters(list(request.parameters))
            await self._repository().load(request.model_name)
            return self.protocol.message("RepositoryModelLoadResponse")()

        return await self._answer(context, work, "RepositoryModelLoad", request.model_name)

    async def RepositoryModelUnload(self, request: Any, context: aio.ServicerContext) -> Any:
        async def work() -> Any:
            self._check_key(context)
            await self._repository().unload(request.model_name)
            return self.protocol.message("RepositoryModelUnloadResponse")()

        return await self._answer(context, work, "RepositoryModelUnload", request.model_name)


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
    """The protocol's gRPC server on ``host:port`` (``port`` 0: any free port;
    ``reuse_port``: share the port with the sibling workers of one server, ``SO_REUSEPORT``).

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
        repository: ModelRepository | None = None,
        observe: CallObserver = _ignore_call,
        reuse_port: bool = False,
    ) -> None:
        self.address = f"{host}:{port}"
        self.servicer = OipServicer(
            backend,
            load_protocol(),
            translate_error=translate_error,
            api_key=api_key,
            repository=repository,
            observe=observe,
        )
        self.options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            # gRPC sets SO_REUSEPORT by default on Linux: a second server on a taken port would
            # bind and silently share its calls instead of failing to start. Only the workers
            # of one server share the port (``reuse_port``; see app/service/oip/mount.py).
            ("grpc.so_reuseport", 1 if reuse_port else 0),
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
