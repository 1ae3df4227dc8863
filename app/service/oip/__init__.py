"""The Open Inference Protocol (KServe v2) over HTTP and gRPC.

``codec`` turns HTTP bodies (JSON, or JSON plus Triton's binary tensor data) into
:class:`~app.service.oip.messages.InferRequest` and answers back into bytes; ``grpc_server``
does the same for the protocol's gRPC messages. Both talk to an
:class:`~app.service.oip.backend.InferenceBackend` (and, for the model repository extension, a
:class:`~app.service.oip.backend.ModelRepository`); ``spp_backend`` serves each of this
service's models as two protocol models (detection and whole-image classification);
``service_models`` connects them to the service's registry and its request sequence
(:mod:`app.service.requests`); ``mount`` puts the HTTP routes on the app and runs the gRPC
server in its lifespan, sharing its port among the workers of one server (``port_sharing``).
"""
