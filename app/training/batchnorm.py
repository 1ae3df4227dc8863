"""Batch normalisation as a training-time device only, folded away before the model ships.

Trained from scratch without normalisation, ZF-5's conv5 ReLUs die within a few hundred
steps (the within-channel LRN is far too weak to prevent it). During classification
pre-training each conv is therefore followed by a BatchNorm2d; afterwards every BN, an
affine map in eval mode, is folded exactly into the conv before it:

    W' = W * g / sqrt(v + eps),    b' = (b - m) * g / sqrt(v + eps) + beta

so the shipped network is exactly the ZF-5 of docs/model.md §1 (conv + ReLU + LRN + pool).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from app.model.zf5 import ZF5Trunk

CONVS = ("conv1", "conv2", "conv3", "conv4", "conv5")


def attach_batchnorm(trunk: ZF5Trunk) -> None:
    """Replace each ``convN`` of ``trunk`` by ``Sequential(convN, BatchNorm2d)`` (in place)."""
    for name in CONVS:
        conv = getattr(trunk, name)
        if isinstance(conv, nn.Conv2d):
            setattr(trunk, name, nn.Sequential(conv, nn.BatchNorm2d(conv.out_channels)))


@torch.no_grad()
def fold_batchnorm(trunk: ZF5Trunk) -> None:
    """Fold every attached BatchNorm2d into its conv, restoring plain ``nn.Conv2d`` layers."""
    for name in CONVS:
        block = getattr(trunk, name)
        if not isinstance(block, nn.Sequential):
            continue
        conv, bn = block[0], block[1]
        assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
        assert bn.running_mean is not None and bn.running_var is not None
        factor = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # [C]
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        folded = copy.deepcopy(conv)  # same kernel, stride, padding
        folded.weight = nn.Parameter(conv.weight * factor.view(-1, 1, 1, 1))
        folded.bias = nn.Parameter((bias - bn.running_mean) * factor + bn.bias)
        setattr(trunk, name, folded.to(conv.weight.device))
