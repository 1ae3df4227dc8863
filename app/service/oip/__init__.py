"""The Open Inference Protocol (KServe v2) over HTTP and gRPC.

``codec`` turns HTTP bodies (JSON, or JSON plus Triton's binary tensor data) into
:class:`~app.service.oip.messages.InferRequest` and answers back into bytes; ``grpc_server``
does the same for the protocol's gRPC messages. Both talk to an
:class:`~app.service.oip.backend.InferenceBackend`; ``spp`` is the backend of this service's two
models (detection and whole-image classification) over the engine that runs them;
``service_engine`` is that engine on this service (admission, deadline, decoding, the batching
worker), and ``mount`` puts the HTTP routes on the app and runs the gRPC server in its lifespan.
"""
