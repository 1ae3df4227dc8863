"""The release's ZF-5 convolutional trunk: conv1..conv5 weights from its Caffe file, checked.

The binary ``Zeiler_conv5`` holds the weights only; the geometry of the trunk comes from the
release's net definition (``model-defs/Zeiler_conv5.prototxt``) and is given here as
:data:`RELEASE_TRUNK`, so that the importer can write it into a manifest:

=======  ==============  ============================================
layer    kernel/stride/pad  after it
=======  ==============  ============================================
conv1    7 / 2 / 1       ReLU, within-channel LRN, max pool 3 / 2
conv2    5 / 2 / 0       ReLU, within-channel LRN, max pool 3 / 2
conv3    3 / 1 / 1       ReLU
conv4    3 / 1 / 1       ReLU
conv5    3 / 1 / 1       ReLU
=======  ==============  ============================================

Max pools have no padding and round their output size up (Caffe's ceil mode):
``ceil((a - 3) / 2) + 1``. LRN is Caffe's WITHIN_CHANNEL, size 3, alpha 5e-5, beta 0.75. The
network takes BGR pixels in 0..255 minus the scalar mean 128 (``utils/caffe_anysize_test.m``).
A 224 x 224 input gives a 13 x 13 conv5 map.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.model.release.caffe import read_caffe_blobs
from app.model.release.errors import ReleaseFormatError


@dataclass(frozen=True)
class ConvGeometry:
    """One convolution of the release trunk and the max pool after it, if any (pixels)."""

    name: str  # Caffe layer name, e.g. "conv1"
    kernel: int  # square kernel side
    stride: int
    pad: int  # zero padding on each side
    lrn_and_pool: bool  # followed by within-channel LRN and a 3 / 2 ceil-mode max pool


#: The trunk of ``model-defs/Zeiler_conv5.prototxt``, conv1 first.
RELEASE_TRUNK: tuple[ConvGeometry, ...] = (
    ConvGeometry("conv1", kernel=7, stride=2, pad=1, lrn_and_pool=True),
    ConvGeometry("conv2", kernel=5, stride=2, pad=0, lrn_and_pool=True),
    ConvGeometry("conv3", kernel=3, stride=1, pad=1, lrn_and_pool=False),
    ConvGeometry("conv4", kernel=3, stride=1, pad=1, lrn_and_pool=False),
    ConvGeometry("conv5", kernel=3, stride=1, pad=1, lrn_and_pool=False),
)
RELEASE_POOL_KERNEL = 3  # max pool side after conv1 and conv2
RELEASE_POOL_STRIDE = 2
RELEASE_LRN_SIZE = 3
RELEASE_LRN_ALPHA = 5e-5
RELEASE_LRN_BETA = 0.75
RELEASE_INPUT_MEAN = 128.0  # subtracted from every BGR channel, pixels in 0..255


@dataclass(frozen=True)
class ConvLayerWeights:
    """One convolution's parameters in Caffe's layout."""

    name: str
    weight: np.ndarray  # float32 [out, in, kernel, kernel], cross-correlation as in Caffe
    bias: np.ndarray  # float32 [out]


@dataclass(frozen=True)
class ReleaseConvTrunk:
    """conv1..conv5 of the release, in :data:`RELEASE_TRUNK` order."""

    layers: tuple[ConvLayerWeights, ...]

    @property
    def out_channels(self) -> int:
        """Channels of conv5 (256 in the release)."""
        return int(self.layers[-1].weight.shape[0])


def _conv_layer(
    blobs: dict[str, list[np.ndarray]], geometry: ConvGeometry, in_channels: int, source: str
) -> ConvLayerWeights:
    where = f"{source}: layer {geometry.name!r}"
    if geometry.name not in blobs:
        raise ReleaseFormatError(
            f"{source}: expected a layer {geometry.name!r} with weights, found layers "
            f"{sorted(blobs)}"
        )
    layer_blobs = blobs[geometry.name]
    if len(layer_blobs) != 2:
        raise ReleaseFormatError(
            f"{where}: expected 2 blobs (weight, bias), found {len(layer_blobs)}"
        )
    weight, bias = layer_blobs
    k = geometry.kernel
    if weight.ndim != 4 or weight.shape[1:] != (in_channels, k, k):
        raise ReleaseFormatError(
            f"{where}: expected a weight of shape [out, {in_channels}, {k}, {k}], "
            f"found {list(weight.shape)}"
        )
    out = weight.shape[0]
    if bias.size != out or any(d != 1 for d in bias.shape[:-1]):
        raise ReleaseFormatError(
            f"{where}: expected a bias of {out} values ([{out}] or [1, 1, 1, {out}]), "
            f"found {list(bias.shape)}"
        )
    return ConvLayerWeights(
        name=geometry.name,
        weight=np.ascontiguousarray(weight, dtype=np.float32),
        bias=bias.reshape(out).astype(np.float32),
    )


def conv_trunk_from_blobs(
    blobs: dict[str, list[np.ndarray]], *, source: str = "<caffe>"
) -> ReleaseConvTrunk:
    """Pick and check conv1..conv5 among the layers of a Caffe file; other layers are ignored.

    Raises:
        ReleaseFormatError: a conv layer missing, without exactly (weight, bias), a kernel other
            than the release's, or input channels that do not chain (3 into conv1).
    """
    layers = []
    in_channels = 3
    for geometry in RELEASE_TRUNK:
        layer = _conv_layer(blobs, geometry, in_channels, source)
        layers.append(layer)
        in_channels = layer.weight.shape[0]
    return ReleaseConvTrunk(layers=tuple(layers))


def read_release_conv_trunk(path: str | Path) -> ReleaseConvTrunk:
    """conv1..conv5 of the Caffe file at ``path`` (e.g. ``Zeiler_conv5``), checked."""
    return conv_trunk_from_blobs(read_caffe_blobs(path), source=str(path))
