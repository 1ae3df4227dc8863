"""Folding the training-time BatchNorm leaves the trunk's function unchanged, exactly ZF-5."""

from __future__ import annotations

import torch
from torch import nn

from app.model.config import ModelConfig
from app.model.zf5 import ZF5Trunk
from app.training.batchnorm import attach_batchnorm, fold_batchnorm


def test_fold_preserves_outputs_and_restores_plain_convs() -> None:
    torch.manual_seed(0)
    trunk = ZF5Trunk(ModelConfig(num_classes=2, width=0.125))
    attach_batchnorm(trunk)
    trunk.train()
    for _ in range(3):  # give the running statistics non-trivial values
        trunk(torch.randn(4, 3, 64, 64) * 60)
    for module in trunk.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.weight.data.uniform_(0.5, 2.0)
            module.bias.data.uniform_(-1, 1)
    trunk.eval()
    x = torch.randn(2, 3, 96, 80) * 60
    with torch.no_grad():
        before = trunk(x)
        fold_batchnorm(trunk)
        after = trunk(x)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
    assert all(isinstance(getattr(trunk, f"conv{i}"), nn.Conv2d) for i in range(1, 6))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in trunk.modules())
    assert set(trunk.state_dict()) == set(
        ZF5Trunk(ModelConfig(num_classes=2, width=0.125)).state_dict()
    )
