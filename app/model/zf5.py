"""The ZF-5 convolutional trunk (docs/model.md §1) and its within-channel LRN."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from app.model.config import ModelConfig

#: Total stride of conv5 with respect to the input image (docs/model.md §1).
CONV5_STRIDE = 16


def within_channel_lrn(
    x: Tensor, *, size: int = 3, alpha: float = 5e-5, beta: float = 0.75
) -> Tensor:
    """Caffe's WITHIN_CHANNEL local response normalisation.

    ``y = x * (1 + alpha * mean_{size x size}(x^2)) ** (-beta)``, the mean taken with zero
    padding over a spatial window of each channel separately. A depthwise average pool is
    all it needs, unlike ``torch.nn.LocalResponseNorm``, which normalises across channels.

    Args:
        x (Tensor[B, C, H, W]): activations.

    Returns:
        Tensor[B, C, H, W]: normalised activations, same dtype.
    """
    mean_sq = F.avg_pool2d(x * x, size, stride=1, padding=size // 2, count_include_pad=True)
    return x * (1.0 + alpha * mean_sq).pow(-beta)


class WithinChannelLRN(nn.Module):
    """Module wrapper of :func:`within_channel_lrn`; stores its arguments only."""

    def __init__(self, size: int = 3, alpha: float = 5e-5, beta: float = 0.75) -> None:
        super().__init__()
        self.size, self.alpha, self.beta = size, alpha, beta

    def forward(self, x: Tensor) -> Tensor:
        return within_channel_lrn(x, size=self.size, alpha=self.alpha, beta=self.beta)

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}"


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int, pad: int) -> nn.Conv2d:
    # docs/model.md pads floor(k/2) everywhere, so conv5 cell j is centred on image pixel 16 * j.
    return nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=pad)


def _pool(config: ModelConfig) -> nn.MaxPool2d:
    return nn.MaxPool2d(3, stride=2, padding=config.pool_pad, ceil_mode=config.pool_ceil_mode)


class ZF5Trunk(nn.Module):
    """conv1 .. conv5 of ZF-5 (with ReLU), total stride 16.

    Input ``Tensor[B, 3, H, W]`` (mean-subtracted, channel order of the manifest); output
    ``Tensor[B, C5, H5, W5]``. With the geometry of docs/model.md §1 (``conv_pads``
    (3, 2, 1, 1, 1), pools padded by 1) ``H5 = ceil(H/16)`` for H a multiple of 16 (in general
    each stride-2 layer maps a side a to floor((a - 1) / 2) + 1). With the SPP_net release's
    ((1, 0, 1, 1, 1), unpadded ceil-mode pools) a 224 input gives 13: conv1 110, pool 55,
    conv2 26, pool 13.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        c1, c2, c3, c4, c5 = config.conv_channels
        p1, p2, p3, p4, p5 = config.conv_pads
        self.conv1 = _conv(3, c1, 7, 2, p1)
        self.norm1 = WithinChannelLRN(config.lrn_size, config.lrn_alpha, config.lrn_beta)
        self.pool1 = _pool(config)
        self.conv2 = _conv(c1, c2, 5, 2, p2)
        self.norm2 = WithinChannelLRN(config.lrn_size, config.lrn_alpha, config.lrn_beta)
        self.pool2 = _pool(config)
        self.conv3 = _conv(c2, c3, 3, 1, p3)
        self.conv4 = _conv(c3, c4, 3, 1, p4)
        self.conv5 = _conv(c4, c5, 3, 1, p5)
        self.out_channels = c5

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool1(self.norm1(torch.relu(self.conv1(x))))
        x = self.pool2(self.norm2(torch.relu(self.conv2(x))))
        x = torch.relu(self.conv3(x))
        x = torch.relu(self.conv4(x))
        return torch.relu(self.conv5(x))
