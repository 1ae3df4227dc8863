"""The Caffe reader: every layout, packed or not, round-trips; unusable files get a clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from release_files import make_release, unpacked_caffe_messages, write_caffemodel

from app.model.release import (
    ReleaseFormatError,
    conv_trunk_from_blobs,
    parse_caffe_blobs,
    read_caffe_blobs,
    read_release_conv_trunk,
)
from app.model.release.caffe import caffe_messages

LAYOUTS = ["v1", "v0", "current"]


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "unpacked"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_caffemodel_round_trips(tmp_path: Path, layout: str, packed: bool) -> None:
    arrays = make_release(1)
    fc6 = arrays.fc[0]
    path = write_caffemodel(
        tmp_path / "Zeiler_conv5",
        arrays.conv,
        layout=layout,
        packed=packed,
        extra=[("fc6", [fc6[1], fc6[2]])],
    )
    blobs = read_caffe_blobs(path)
    assert list(blobs) == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6"]  # weightless skipped
    for name, weight, bias in arrays.conv:
        got_w, got_b = blobs[name]
        assert got_w.dtype == np.float32
        np.testing.assert_array_equal(got_w, weight)
        legacy_bias_shape = (1, 1, 1, bias.size) if layout != "current" else (bias.size,)
        assert got_b.shape == legacy_bias_shape
        np.testing.assert_array_equal(got_b.reshape(-1), bias)
    legacy_fc = (1, 1, *fc6[1].shape) if layout != "current" else fc6[1].shape
    assert blobs["fc6"][0].shape == legacy_fc
    trunk = conv_trunk_from_blobs(blobs)
    assert [layer.name for layer in trunk.layers] == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    assert trunk.layers[1].bias.shape == (4,)
    assert trunk.out_channels == 4


def test_packed_and_unpacked_files_differ_on_the_wire_but_read_the_same(tmp_path: Path) -> None:
    arrays = make_release(2)
    packed = write_caffemodel(tmp_path / "p", arrays.conv, packed=True)
    unpacked = write_caffemodel(tmp_path / "u", arrays.conv, packed=False)
    assert packed.read_bytes() != unpacked.read_bytes()
    # an unpacked float costs a tag byte more than a packed one
    assert unpacked.stat().st_size > packed.stat().st_size
    a, b = read_caffe_blobs(packed), read_caffe_blobs(unpacked)
    for name in a:
        for x, y in zip(a[name], b[name], strict=True):
            np.testing.assert_array_equal(x, y)


def test_double_data_blobs_keep_float64(tmp_path: Path) -> None:
    arrays = make_release(3)
    path = write_caffemodel(tmp_path / "d", arrays.conv, layout="current", double=True)
    blobs = read_caffe_blobs(path)
    assert blobs["conv3"][0].dtype == np.float64
    np.testing.assert_array_equal(blobs["conv3"][0], arrays.conv[2][1].astype(np.float64))
    trunk = read_release_conv_trunk(path)
    assert trunk.layers[2].weight.dtype == np.float32


def test_unpacked_declaration_really_is_unpacked() -> None:
    blob = unpacked_caffe_messages().blob()
    blob.data.extend([1.0, 2.0])
    # field 5, wire type 5 (32-bit), once per value
    assert blob.SerializeToString() == b"\x2d\x00\x00\x80\x3f\x2d\x00\x00\x00\x40"
    packed = caffe_messages().blob()
    packed.data.extend([1.0, 2.0])
    assert packed.SerializeToString() == b"\x2a\x08\x00\x00\x80\x3f\x00\x00\x00\x40"


# ------------------------------------------------------------------ unusable files -----------


def _bad(data: bytes, match: str) -> None:
    with pytest.raises(ReleaseFormatError, match=match):
        parse_caffe_blobs(data, source="Zeiler_conv5")


def test_truncated_caffemodel_is_a_clear_error(tmp_path: Path) -> None:
    data = write_caffemodel(tmp_path / "m", make_release(4).conv).read_bytes()
    for cut in (len(data) // 3, len(data) // 2, len(data) - 5):
        with pytest.raises(ReleaseFormatError, match="Zeiler_conv5"):
            conv_trunk_from_blobs(parse_caffe_blobs(data[:cut], source="Zeiler_conv5"))


def test_other_kinds_of_file_are_named() -> None:
    _bad(b"", "empty file")
    _bad(b'name: "ImageNet_Zeiler"\n\ninput: "data"\nlayers {\n', "prototxt")
    _bad(b"MATLAB 5.0 MAT-file, Platform: GLNXA64" + bytes(100), "MATLAB")
    _bad(b"\x89HDF\r\n\x1a\n" + bytes(100), "HDF5")
    _bad(b"PK\x03\x04" + bytes(40), "zip")


def test_a_netparameter_without_weights_is_an_error() -> None:
    net = caffe_messages().net(name="only definitions")
    net.layers.add(name="relu1", type=18)
    _bad(net.SerializeToString(), "no weights")


def test_a_blobproto_file_is_not_a_net() -> None:
    blob = caffe_messages().blob(num=1, channels=3, height=2, width=2)
    blob.data.extend([0.5] * 12)
    _bad(blob.SerializeToString(), "Caffe NetParameter")


def test_blob_values_must_fill_its_shape() -> None:
    net = caffe_messages().net()
    layer = net.layer.add(name="conv1")
    blob = layer.blobs.add()
    blob.shape.dim.extend([2, 3])
    blob.data.extend([1.0] * 5)
    _bad(
        net.SerializeToString(),
        r"layer 'conv1' blob 0: expected 6 values for shape \[2, 3\], found 5",
    )


def test_duplicate_and_unnamed_layers_are_errors() -> None:
    net = caffe_messages().net()
    for _ in range(2):
        net.layer.add(name="conv1").blobs.add().data.append(1.0)
    net.layer[0].blobs[0].shape.dim.append(1)
    net.layer[1].blobs[0].shape.dim.append(1)
    _bad(net.SerializeToString(), "'conv1' twice")
    net2 = caffe_messages().net()
    blob = net2.layer.add().blobs.add()
    blob.shape.dim.append(1)
    blob.data.append(1.0)
    _bad(net2.SerializeToString(), "layer 0 has weights but no name")


def test_mixed_layouts_are_an_error() -> None:
    net = caffe_messages().net()
    net.layer.add(name="a")
    net.layers.add(name="b")
    _bad(net.SerializeToString(), "one layout")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda conv: conv.pop(2), "expected a layer 'conv3'"),
        (
            lambda conv: conv.__setitem__(0, ("conv1", conv[0][1][:, :, :5, :5], conv[0][2])),
            r"\[out, 3, 7, 7\]",
        ),
        (
            lambda conv: conv.__setitem__(3, ("conv4", conv[3][1], conv[3][2][:3])),
            "bias of 4 values",
        ),
        (
            lambda conv: conv.__setitem__(1, ("conv2", conv[1][1][:, :2], conv[1][2])),
            r"\[out, 4, 5, 5\]",
        ),
    ],
    ids=["missing-conv3", "conv1-kernel-5", "short-bias", "conv2-channels"],
)
def test_wrong_trunk_shapes_are_named(tmp_path: Path, change, match: str) -> None:  # type: ignore[no-untyped-def]
    conv = list(make_release(5).conv)
    change(conv)
    path = write_caffemodel(tmp_path / "m", conv)
    with pytest.raises(ReleaseFormatError, match=match):
        read_release_conv_trunk(path)
