"""ZF-5 trunk: within-channel LRN against a direct loop, and the geometry of docs/model.md §1."""

from __future__ import annotations

import math

import pytest
import torch

from app.model.config import ModelConfig
from app.model.zf5 import CONV5_STRIDE, ZF5Trunk, within_channel_lrn


def lrn_reference(x: torch.Tensor, size: int, alpha: float, beta: float) -> torch.Tensor:
    """``x * (1 + alpha * mean of x^2 over the size x size window, zero padded) ** -beta``."""
    b, c, h, w = x.shape
    r = size // 2
    out = torch.empty_like(x)
    for i in range(h):
        for j in range(w):
            acc = torch.zeros(b, c, dtype=x.dtype)
            for di in range(-r, r + 1):
                for dj in range(-r, r + 1):
                    if 0 <= i + di < h and 0 <= j + dj < w:
                        acc += x[:, :, i + di, j + dj] ** 2
            out[:, :, i, j] = x[:, :, i, j] * (1 + alpha * acc / size**2) ** (-beta)
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_within_channel_lrn_matches_loop(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 5, 7, generator=g, dtype=torch.float64) * 100
    expected = lrn_reference(x, 3, 5e-5, 0.75)
    torch.testing.assert_close(within_channel_lrn(x, size=3, alpha=5e-5, beta=0.75), expected)


def test_lrn_does_not_mix_channels() -> None:
    x = torch.zeros(1, 2, 4, 4)
    x[0, 1] = 50.0
    y = within_channel_lrn(x)
    assert torch.equal(y[0, 0], torch.zeros(4, 4))


@pytest.mark.parametrize(("height", "width"), [(224, 224), (688, 917), (180, 180), (33, 17)])
def test_conv5_size_is_ceil_of_a_sixteenth(height: int, width: int) -> None:
    trunk = ZF5Trunk(ModelConfig(num_classes=2, width=0.125)).eval()
    with torch.no_grad():
        out = trunk(torch.zeros(1, 3, height, width))
    # Each stride-2 layer with pad floor(k/2) maps a to floor((a - 1) / 2) + 1 = ceil(a / 2).
    expected = (height, width)
    for _ in range(4):
        expected = ((expected[0] + 1) // 2, (expected[1] + 1) // 2)
    assert tuple(out.shape[-2:]) == expected
    assert CONV5_STRIDE == 16


def test_paper_widths_and_spp_dim() -> None:
    config = ModelConfig(num_classes=20)
    assert config.conv_channels == (96, 256, 384, 384, 256)
    assert config.spp_dim == 12800
    assert ZF5Trunk(config).conv1.padding == (3, 3)


def test_conv5_cell_centre_sits_at_sixteen_j() -> None:
    """A single bright pixel at 16 * j excites conv5 symmetrically around cell j."""
    config = ModelConfig(num_classes=1, width=0.125)
    trunk = ZF5Trunk(config).eval()
    for module in trunk.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.constant_(module.weight, 1.0)
            torch.nn.init.zeros_(module.bias)
    x = torch.zeros(1, 3, 1, 256)
    x[..., 16 * 7] = 1.0
    with torch.no_grad():
        row = trunk(x)[0, 0, 0]
    peak = int(row.argmax())
    assert peak == 7
    assert torch.allclose(row[peak - 1], row[peak + 1], rtol=1e-4)


def _caffe_side(a: int, kernel: int, stride: int, pad: int, pool: bool) -> int:
    """Caffe's conv output side, then its unpadded ceil-mode 3 / 2 pool's."""
    side = (a + 2 * pad - kernel) // stride + 1
    return math.ceil((side - 3) / 2) + 1 if pool else side


RELEASE_GEOMETRY = {"conv_pads": (1, 0, 1, 1, 1), "pool_pad": 0, "pool_ceil_mode": True}


@pytest.mark.parametrize(("height", "width"), [(224, 224), (688, 917), (480, 641), (61, 83)])
def test_release_geometry_gives_caffes_conv5_size(height: int, width: int) -> None:
    config = ModelConfig(num_classes=2, channels=(4, 4, 4, 4, 4), **RELEASE_GEOMETRY)
    trunk = ZF5Trunk(config).eval()
    with torch.no_grad():
        out = trunk(torch.zeros(1, 3, height, width))
    sides = [height, width]
    for kernel, stride, pad, pool in ((7, 2, 1, True), (5, 2, 0, True), (3, 1, 1, False)):
        sides = [_caffe_side(a, kernel, stride, pad, pool) for a in sides]
    assert tuple(out.shape[-2:]) == tuple(sides)
    if height == 224:
        assert tuple(out.shape[-2:]) == (13, 13)
    assert out.shape[1] == 4


def test_ceil_mode_pool_keeps_the_clipped_last_window() -> None:
    config = ModelConfig(num_classes=2, channels=(8, 8, 8, 8, 8), **RELEASE_GEOMETRY)
    pool = ZF5Trunk(config).pool1
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    # (4 - 3) / 2 rounds up: 2 x 2 outputs, the second window holds rows/columns 2-3 only
    assert pool(x)[0, 0].tolist() == [[10.0, 11.0], [14.0, 15.0]]


def test_default_geometry_is_specs() -> None:
    trunk = ZF5Trunk(ModelConfig(num_classes=2, width=0.125))
    convs = [trunk.conv1, trunk.conv2, trunk.conv3, trunk.conv4, trunk.conv5]
    assert [c.padding for c in convs] == [(3, 3), (2, 2), (1, 1), (1, 1), (1, 1)]
    for pool in (trunk.pool1, trunk.pool2):
        assert (pool.kernel_size, pool.stride, pool.padding, pool.ceil_mode) == (3, 2, 1, False)


def test_geometry_is_validated() -> None:
    with pytest.raises(ValueError, match="conv_pads"):
        ModelConfig(num_classes=2, conv_pads=(7, 0, 1, 1, 1))
    with pytest.raises(ValueError, match="channels"):
        ModelConfig(num_classes=2, channels=(4, 4, 0, 4, 4))
    with pytest.raises(ValueError):
        ModelConfig(num_classes=2, pool_pad=2)
