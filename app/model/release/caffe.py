"""Binary Caffe ``NetParameter`` files: the weights of each layer, in all three layouts.

A caffemodel (the release's ``Zeiler_conv5`` too) is one serialized ``NetParameter``. Caffe
wrote its layers in three layouts over the years, and this module reads them all:

- current: ``NetParameter.layer`` (field 100), each ``LayerParameter`` with name 1, type 2
  (a string) and blobs 7;
- V1: ``NetParameter.layers`` (field 2), each ``V1LayerParameter`` with name 4, type 5 (an
  enum, kept here as its number) and blobs 6;
- V0 wrapped in V1: ``V1LayerParameter.layer`` (field 1), a ``V0LayerParameter`` with name 1,
  type 2 (a string) and blobs 50. The release's own pre-V1 layout (``layers { layer { ... }
  bottom top }``) puts the same message at the same field number.

A ``BlobProto`` holds num 1, channels 2, height 3, width 4 (the legacy 4-D shape), data 5
(float), shape 7 (``BlobShape.dim`` 1) and double_data 8. Repeated numbers are declared packed,
as Caffe writes them; protobuf parsers read unpacked encodings of the same fields as well.

Only the fields needed to find each layer's weights are declared; everything else in the file
(layer parameters, fillers, learning rates) is skipped by protobuf as unknown fields. The
messages are declared in Python (a ``FileDescriptorProto`` in a private descriptor pool), so no
generated code is checked in and nothing is registered globally.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from app.model.release.errors import ReleaseFormatError

_PACKAGE = "spp_release_caffe"
_FIELD = descriptor_pb2.FieldDescriptorProto


@dataclass(frozen=True)
class CaffeMessages:
    """Message classes built from one declaration (see :func:`caffe_file_descriptor`)."""

    net: Any  # NetParameter
    v1_layer: Any  # V1LayerParameter
    v0_layer: Any  # V0LayerParameter
    layer: Any  # LayerParameter (current)
    blob: Any  # BlobProto
    blob_shape: Any  # BlobShape


def _field(
    name: str,
    number: int,
    field_type: int,
    *,
    repeated: bool = False,
    message: str | None = None,
    packed: bool = False,
) -> descriptor_pb2.FieldDescriptorProto:
    field = _FIELD(name=name, number=number, type=field_type)  # type: ignore[arg-type]
    field.label = _FIELD.LABEL_REPEATED if repeated else _FIELD.LABEL_OPTIONAL
    if message is not None:
        field.type_name = f".{_PACKAGE}.{message}"
    if packed:
        field.options.packed = True
    return field


def caffe_file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """A new copy of the proto2 declaration of the Caffe messages this module reads.

    Field numbers follow Caffe's ``caffe.proto``. A caller may change the copy (for example
    declare the numbers unpacked to write test files) and build classes from it with
    :func:`build_caffe_messages`.
    """
    t = _FIELD
    messages = {
        "BlobShape": [_field("dim", 1, t.TYPE_INT64, repeated=True, packed=True)],
        "BlobProto": [
            _field("num", 1, t.TYPE_INT32),
            _field("channels", 2, t.TYPE_INT32),
            _field("height", 3, t.TYPE_INT32),
            _field("width", 4, t.TYPE_INT32),
            _field("data", 5, t.TYPE_FLOAT, repeated=True, packed=True),
            _field("shape", 7, t.TYPE_MESSAGE, message="BlobShape"),
            _field("double_data", 8, t.TYPE_DOUBLE, repeated=True, packed=True),
        ],
        "V0LayerParameter": [
            _field("name", 1, t.TYPE_STRING),
            _field("type", 2, t.TYPE_STRING),
            _field("blobs", 50, t.TYPE_MESSAGE, repeated=True, message="BlobProto"),
        ],
        "V1LayerParameter": [
            _field("layer", 1, t.TYPE_MESSAGE, message="V0LayerParameter"),
            _field("bottom", 2, t.TYPE_STRING, repeated=True),
            _field("top", 3, t.TYPE_STRING, repeated=True),
            _field("name", 4, t.TYPE_STRING),
            # Caffe's LayerType enum; an int32 reads the same varint and keeps unknown values.
            _field("type", 5, t.TYPE_INT32),
            _field("blobs", 6, t.TYPE_MESSAGE, repeated=True, message="BlobProto"),
        ],
        "LayerParameter": [
            _field("name", 1, t.TYPE_STRING),
            _field("type", 2, t.TYPE_STRING),
            _field("bottom", 3, t.TYPE_STRING, repeated=True),
            _field("top", 4, t.TYPE_STRING, repeated=True),
            _field("blobs", 7, t.TYPE_MESSAGE, repeated=True, message="BlobProto"),
        ],
        "NetParameter": [
            _field("name", 1, t.TYPE_STRING),
            _field("layers", 2, t.TYPE_MESSAGE, repeated=True, message="V1LayerParameter"),
            _field("input", 3, t.TYPE_STRING, repeated=True),
            _field("input_dim", 4, t.TYPE_INT32, repeated=True),
            _field("layer", 100, t.TYPE_MESSAGE, repeated=True, message="LayerParameter"),
        ],
    }
    file_proto = descriptor_pb2.FileDescriptorProto(
        name=f"{_PACKAGE}.proto", package=_PACKAGE, syntax="proto2"
    )
    for message_name, fields in messages.items():
        file_proto.message_type.add(name=message_name).field.extend(fields)
    return file_proto


def build_caffe_messages(file_proto: descriptor_pb2.FileDescriptorProto) -> CaffeMessages:
    """Message classes for ``file_proto``, built in a fresh private descriptor pool."""
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)

    def get(name: str) -> Any:
        return message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"{file_proto.package}.{name}")
        )

    return CaffeMessages(
        net=get("NetParameter"),
        v1_layer=get("V1LayerParameter"),
        v0_layer=get("V0LayerParameter"),
        layer=get("LayerParameter"),
        blob=get("BlobProto"),
        blob_shape=get("BlobShape"),
    )


@functools.cache
def caffe_messages() -> CaffeMessages:
    """The message classes of :func:`caffe_file_descriptor`, built once on first use."""
    return build_caffe_messages(caffe_file_descriptor())


def describe_bytes(data: bytes) -> str:
    """A short guess at what a file that is not the expected kind holds, for error messages."""
    if not data:
        return "an empty file"
    head = data[:128]
    if data.startswith(b"\x89HDF\r\n\x1a\n") or data[512:520] == b"\x89HDF\r\n\x1a\n":
        return "an HDF5 file (a MATLAB v7.3 .mat file?)"
    if head.startswith(b"MATLAB"):
        return "a MATLAB .mat file"
    if head.startswith((b"PK\x03\x04", b"\x1f\x8b")):
        return "a zip or gzip archive (unpack it first)"
    text = head.lstrip()
    if text[:1].isalpha() or text.startswith(b"#"):
        try:
            first_line = text.decode("ascii").splitlines()[0]
        except (UnicodeDecodeError, IndexError):
            pass
        else:
            return f"text starting {first_line[:40]!r} (a .prototxt net definition?)"
    return f"{len(data)} bytes starting {data[:16].hex()}"


def _blob_array(blob: Any, where: str) -> np.ndarray:
    """One ``BlobProto`` as an array of its shape (``shape.dim``, else num/channels/h/w)."""
    if blob.HasField("shape"):
        dims = tuple(int(d) for d in blob.shape.dim)
    else:
        dims = (blob.num, blob.channels, blob.height, blob.width)
    if any(d < 0 for d in dims):
        raise ReleaseFormatError(f"{where}: expected non-negative dimensions, found {dims}")
    if len(blob.data) and len(blob.double_data):
        raise ReleaseFormatError(
            f"{where}: expected either float or double values, found both "
            f"({len(blob.data)} float, {len(blob.double_data)} double)"
        )
    if len(blob.double_data):
        values = np.asarray(blob.double_data, dtype=np.float64)
    else:
        values = np.asarray(blob.data, dtype=np.float32)
    needed = math.prod(dims)
    if values.size != needed:
        raise ReleaseFormatError(
            f"{where}: expected {needed} values for shape {list(dims)}, found {values.size} "
            "(a truncated or damaged file?)"
        )
    return values.reshape(dims)


def _layer_entries(net: Any, source: str) -> list[tuple[str, Sequence[Any]]]:
    """(name, blobs) of every layer in file order, whichever layout the file uses."""
    if len(net.layer) and len(net.layers):
        raise ReleaseFormatError(
            f"{source}: expected layers in one layout, found {len(net.layer)} current-layout "
            f"and {len(net.layers)} V1-layout layers"
        )
    entries: list[tuple[str, Sequence[Any]]] = [(layer.name, layer.blobs) for layer in net.layer]
    for v1 in net.layers:
        name, blobs = v1.name, v1.blobs
        if v1.HasField("layer"):  # V0 wrapped in V1
            if len(v1.layer.blobs) and len(v1.blobs):
                raise ReleaseFormatError(
                    f"{source}: layer {v1.layer.name or v1.name!r}: expected blobs in the V1 or "
                    "the wrapped V0 message, found both"
                )
            name = v1.layer.name or v1.name
            blobs = v1.layer.blobs if len(v1.layer.blobs) else v1.blobs
        entries.append((name, blobs))
    return entries


def parse_caffe_blobs(data: bytes, *, source: str = "<bytes>") -> dict[str, list[np.ndarray]]:
    """The weights of each layer of a serialized ``NetParameter``.

    Args:
        data: the file's bytes.
        source: the name used in error messages (usually the path).

    Returns:
        ``{layer name: [blob, ...]}`` in file order, only layers that have blobs. Each blob is an
        array of its stored shape (``shape.dim``, or the legacy 4-D ``[num, channels, height,
        width]``), float32 (float64 where the file holds ``double_data``). E.g. conv1 of ZF-5:
        ``[Tensor[96, 3, 7, 7], Tensor[1, 1, 1, 96]]`` in the legacy layout.

    Raises:
        ReleaseFormatError: not a NetParameter, truncated, no layer with weights, a layer with
            weights but no name, a name used twice, or a blob whose values do not fill its shape.
    """
    net = caffe_messages().net()
    try:
        net.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as err:
        raise ReleaseFormatError(
            f"{source}: expected a binary Caffe NetParameter, found {describe_bytes(data)} "
            f"that protobuf cannot decode ({err})"
        ) from err
    entries = _layer_entries(net, source)
    weights: dict[str, list[np.ndarray]] = {}
    for index, (name, blobs) in enumerate(entries):
        if not len(blobs):
            continue
        if not name:
            raise ReleaseFormatError(f"{source}: layer {index} has weights but no name")
        if name in weights:
            raise ReleaseFormatError(f"{source}: expected unique layer names, found {name!r} twice")
        weights[name] = [
            _blob_array(blob, f"{source}: layer {name!r} blob {j}") for j, blob in enumerate(blobs)
        ]
    if not weights:
        raise ReleaseFormatError(
            f"{source}: expected a Caffe NetParameter with weights, found {describe_bytes(data)} "
            f"holding {len(entries)} layers and no weights"
        )
    return weights


def read_caffe_blobs(path: str | Path) -> dict[str, list[np.ndarray]]:
    """:func:`parse_caffe_blobs` of the file at ``path`` (OSError if it cannot be opened)."""
    path = Path(path)
    return parse_caffe_blobs(path.read_bytes(), source=str(path))
