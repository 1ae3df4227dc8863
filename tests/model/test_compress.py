"""Truncated-SVD compression of fc6/fc7 (app.model.compress).

Tolerances: at full rank the float64 SVD reproduces the head's float32 outputs to within
``atol=1e-4, rtol=1e-4`` (the fc activations here are O(1..10); the only difference is float32
rounding in a different summation order). At a low rank the relative Frobenius error of the
factorised weight is exactly the discarded singular-value energy (checked to 1e-5), and the
head's output error is bounded by it through the 1-Lipschitz ReLUs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from app.inference.detector import DetectOptions, Detector
from app.model.compress import (
    LowRankLinear,
    compress_detector_model,
    low_rank_linear,
    svd_compress_head,
)
from app.model.heads import FcHead
from app.model.store import SppModel

FULL_RANK_TOL = {"atol": 1e-4, "rtol": 1e-4}


def _head(in_dim: int = 96, fc_dim: int = 40, seed: int = 0) -> FcHead:
    torch.manual_seed(seed)
    return FcHead(in_dim, fc_dim, dropout=0.5).eval()


@pytest.mark.parametrize("bias", [True, False])
def test_low_rank_linear_full_rank_reproduces_layer(bias: bool) -> None:
    torch.manual_seed(1)
    layer = nn.Linear(30, 20, bias=bias)
    x = torch.randn(7, 30)
    factorised = low_rank_linear(layer, 20)
    assert isinstance(factorised, LowRankLinear)
    assert (factorised.in_features, factorised.rank, factorised.out_features) == (30, 20, 20)
    assert factorised.reduce.bias is None
    torch.testing.assert_close(factorised(x), layer(x), **FULL_RANK_TOL)


def test_low_rank_weight_error_is_discarded_energy() -> None:
    torch.manual_seed(2)
    layer = nn.Linear(64, 48)
    rank = 12
    factorised = low_rank_linear(layer, rank)
    weight = layer.weight.detach()
    approx = (factorised.expand.weight @ factorised.reduce.weight).detach()  # [48, 64]
    s = torch.linalg.svdvals(weight.double())
    expected = float(s[rank:].square().sum().sqrt() / s.square().sum().sqrt())
    got = float((approx - weight).norm() / weight.norm())
    assert got == pytest.approx(expected, abs=1e-5)
    assert 0.0 < got < 1.0


def test_full_rank_head_reproduces_outputs() -> None:
    head = _head()
    x = torch.randn(11, 96) * 3
    compressed = svd_compress_head(head, 40, 40)
    assert isinstance(compressed.fc6, LowRankLinear)
    assert isinstance(compressed.fc7, LowRankLinear)
    assert not compressed.training
    torch.testing.assert_close(compressed(x), head(x), **FULL_RANK_TOL)


def test_low_rank_head_error_is_bounded() -> None:
    head = _head(in_dim=128, fc_dim=64)
    x = torch.randn(50, 128)
    errors = []
    with torch.no_grad():
        expected = head(x)
        for rank in (8, 16, 32, 64):
            out = svd_compress_head(head, rank, rank)(x)
            errors.append(float((out - expected).norm() / expected.norm()))
    # Bounded: never worse than returning zeros; shrinking as the rank grows; ~0 at full rank.
    assert all(e < 1.0 for e in errors), errors
    assert errors == sorted(errors, reverse=True), errors
    assert errors[-1] < 1e-4


def test_one_layer_only_and_original_untouched() -> None:
    head = _head()
    before = {k: v.clone() for k, v in head.state_dict().items()}
    compressed = svd_compress_head(head, None, 10)
    assert isinstance(compressed.fc6, nn.Linear)
    assert isinstance(compressed.fc7, LowRankLinear) and compressed.fc7.rank == 10
    assert compressed.fc6 is not head.fc6
    assert isinstance(head.fc6, nn.Linear) and isinstance(head.fc7, nn.Linear)
    for key, value in head.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize("rank", [0, -1, 41, 2.5, True])
def test_bad_rank_is_rejected(rank: object) -> None:
    with pytest.raises(ValueError, match=r"expected rank7 to be an integer in \[1, 40\]"):
        svd_compress_head(_head(), None, rank)  # type: ignore[arg-type]


def test_already_compressed_head_is_rejected() -> None:
    compressed = svd_compress_head(_head(), 5, None)
    with pytest.raises(ValueError, match="not already compressed"):
        svd_compress_head(compressed, 5, 5)


def test_compress_detector_model_copy(tiny_model: SppModel) -> None:
    fc = tiny_model.manifest.model.fc_dim
    before = {k: v.clone() for k, v in tiny_model.net.state_dict().items()}
    full = compress_detector_model(tiny_model, fc, fc)
    low = compress_detector_model(tiny_model, fc // 4, fc // 4)
    # The original model: same modules, same values.
    assert isinstance(tiny_model.net.det_head.fc6, nn.Linear)
    for key, value in tiny_model.net.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert full.net is not tiny_model.net
    assert "SVD-compressed" in low.manifest.description
    assert low.classes == tiny_model.classes
    assert isinstance(low.net.det_head.fc6, LowRankLinear)
    assert isinstance(low.net.cls_head.fc6, nn.Linear)  # classification head untouched

    x = torch.randn(9, tiny_model.manifest.model.spp_dim)
    with torch.inference_mode():
        torch.testing.assert_close(
            full.net.det_head(x), tiny_model.net.det_head(x), **FULL_RANK_TOL
        )


def test_detector_runs_compressed_model(tiny_model: SppModel) -> None:
    fc = tiny_model.manifest.model.fc_dim
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(80, 100, 3), dtype=np.uint8)
    boxes = np.array([[0, 0, 60, 50], [10, 20, 90, 70], [30, 5, 99, 79]], dtype=np.float32)
    options = DetectOptions(min_confidence=0.0)
    [reference] = Detector(tiny_model, "cpu").detect([image], [boxes], options)
    [same] = Detector(compress_detector_model(tiny_model, fc, fc), "cpu").detect(
        [image], [boxes], options
    )
    assert len(same.detections) == len(reference.detections)
    for a, b in zip(same.detections, reference.detections, strict=True):
        assert a.label == b.label
        assert a.score == pytest.approx(b.score, abs=1e-3)
        assert a.box == pytest.approx(b.box, abs=1e-2)
