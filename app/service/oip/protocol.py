"""The gRPC protocol's message classes, generated from ``grpc_predict_v2.proto`` at first use.

``grpcio-tools`` compiles the checked-in ``.proto`` into a descriptor set (in a temporary
directory, once per process, a few milliseconds) and protobuf builds the message classes from
it, as a generated ``_pb2`` module would. The difference is the pool they live in: a ``_pb2``
module registers ``inference.ModelInferRequest`` and friends in protobuf's process-wide pool,
where ``tritonclient.grpc`` and ``kserve`` register the same names from their own copies of the
protocol, and the second registration fails ("duplicate symbol"). Here the messages live in a
private :class:`~google.protobuf.descriptor_pool.DescriptorPool`, so the server imports next to
any client. Nothing generated is written into the package (its install directory may be
read-only) and nothing generated is checked in.
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import ServiceDescriptor

PROTO_FILE = "grpc_predict_v2.proto"
SERVICE_NAME = "inference.GRPCInferenceService"


@dataclass(frozen=True)
class Protocol:
    """The generated service descriptor and message classes (by short name, e.g.
    ``messages["ModelInferRequest"]``; nested ones as ``"ModelInferRequest.InferInputTensor"``)."""

    service: ServiceDescriptor
    messages: dict[str, Any]

    def message(self, name: str) -> Any:
        """The message class ``inference.<name>``."""
        return self.messages[name]


def compile_descriptor_set(proto: Path) -> bytes:
    """``proto`` compiled by grpcio-tools' protoc -> serialized ``FileDescriptorSet``.

    Raises:
        RuntimeError: protoc rejected the file (its messages went to stderr).
    """
    from grpc_tools import protoc  # imported here: only the gRPC server needs it

    with tempfile.TemporaryDirectory(prefix="oip-proto-") as workdir:
        output = Path(workdir) / "descriptor_set.pb"
        status = protoc.main(
            [
                "grpc_tools.protoc",
                f"--proto_path={proto.parent}",
                f"--descriptor_set_out={output}",
                proto.name,
            ]
        )
        if status != 0:
            raise RuntimeError(f"protoc failed on {proto} with status {status}")
        return output.read_bytes()


@functools.cache
def load_protocol() -> Protocol:
    """The protocol's classes, built once per process in a private descriptor pool."""
    with resources.as_file(resources.files(__package__) / PROTO_FILE) as proto:
        serialized = compile_descriptor_set(proto)
    file_set = descriptor_pb2.FileDescriptorSet.FromString(serialized)
    pool = descriptor_pool.DescriptorPool()
    for file_proto in file_set.file:
        pool.Add(file_proto)
    classes = message_factory.GetMessages(list(file_set.file), pool=pool)
    prefix = "inference."
    messages = {name.removeprefix(prefix): cls for name, cls in classes.items()}
    return Protocol(service=pool.FindServiceByName(SERVICE_NAME), messages=messages)
