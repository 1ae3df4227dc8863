"""Stage 5's ridge regressors: exact linear targets are recovered, and the penalty shrinks
the weights as the closed form says."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from app.model.config import ModelConfig
from app.model.net import SppNet
from app.training.stages.finetune import WindowSamples
from app.training.stages.regression import train_box_regressor, train_regressors
from app.training.workdir import WorkDir


def test_exact_linear_targets_are_recovered() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 6)).astype(np.float32)
    weight = rng.normal(size=(4, 6)).astype(np.float32)
    bias = np.array([0.5, -1.0, 2.0, 0.0], np.float32)
    targets = features @ weight.T + bias  # [200, 4]
    got_weight, got_bias = train_box_regressor(features, targets, alpha=1e-6)
    assert got_weight.shape == (4, 6) and got_bias.shape == (4,)
    np.testing.assert_allclose(got_weight, weight, atol=1e-4)
    np.testing.assert_allclose(got_bias, bias, atol=1e-4)


@pytest.mark.parametrize("alpha", [0.0, 1.0, 6.0])
def test_the_penalty_shrinks_one_weight_by_hand(alpha: float) -> None:
    """x = (-1, 1), t = 3 x + 5 in every column: centred, sum x^2 = 2, so
    w = 2 * 3 / (2 + alpha) and the unpenalised bias stays 5."""
    features = np.array([[-1.0], [1.0]], np.float32)
    targets = np.repeat(3 * features + 5, 4, axis=1)
    weight, bias = train_box_regressor(features, targets, alpha=alpha)
    np.testing.assert_allclose(weight, np.full((4, 1), 6 / (2 + alpha)), rtol=1e-5)
    np.testing.assert_allclose(bias, np.full(4, 5.0), rtol=1e-5)


def test_the_closed_form_with_several_features() -> None:
    """``W = (Xc^T Xc + alpha I)^-1 Xc^T Tc`` and ``b = mean(T) - mean(X) W^T``, with
    ``Xc``, ``Tc`` centred."""
    rng = np.random.default_rng(1)
    features = rng.normal(size=(30, 5)) + 2.0
    targets = rng.normal(size=(30, 4))
    alpha = 7.5
    xc, tc = features - features.mean(0), targets - targets.mean(0)
    expected = np.linalg.solve(xc.T @ xc + alpha * np.eye(5), xc.T @ tc).T  # [4, 5]
    weight, bias = train_box_regressor(features, targets, alpha=alpha)
    np.testing.assert_allclose(weight, expected, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(bias, targets.mean(0) - features.mean(0) @ expected.T, atol=1e-3)


def test_no_samples_give_zeros() -> None:
    weight, bias = train_box_regressor(np.zeros((0, 3)), np.zeros((0, 4)))
    assert weight.tolist() == [[0.0] * 3] * 4 and bias.tolist() == [0.0] * 4
    assert weight.dtype == np.float32 and bias.dtype == np.float32


def test_each_class_gets_its_own_rows_and_the_net_applies_the_training_scale(
    tmp_path: Path,
) -> None:
    """Class c's regressor is fitted on the label-(c+1) samples only and lands in rows
    4c..4c+3; ``feature_scale`` is 20 / the mean L2 norm of all pooled vectors, so the net,
    which scales its input the same way, reproduces what the ridge fit predicts."""
    torch.manual_seed(0)
    net = SppNet(ModelConfig(num_classes=2, width=0.125, fc_dim=16))
    dim = net.config.spp_dim
    features = (torch.rand(60, dim) * 4).half()
    labels = torch.tensor([0, 1, 2] * 20)
    targets = torch.randn(60, 4)
    samples = WindowSamples(features, labels, targets, torch.ones(60, dtype=torch.bool))
    train_regressors(net, samples, num_classes=2, alpha=1000.0, work=WorkDir(tmp_path))
    scale = 20.0 / float(features.float().norm(dim=1).mean())
    assert float(net.bbox.feature_scale) == pytest.approx(scale, rel=1e-5)
    for c in range(2):
        mine = labels == c + 1
        weight, bias = train_box_regressor(
            (features[mine].float() * scale).numpy(), targets[mine].numpy(), 1000.0
        )
        torch.testing.assert_close(net.bbox.weight[4 * c : 4 * c + 4], torch.from_numpy(weight))
        torch.testing.assert_close(net.bbox.bias[4 * c : 4 * c + 4], torch.from_numpy(bias))
        predicted = (features[mine].float() * scale).numpy() @ weight.T + bias
        torch.testing.assert_close(
            net.bbox(features[mine].float())[:, c],
            torch.from_numpy(predicted),
            atol=1e-4,
            rtol=1e-4,
        )
    assert "bbox-done" in WorkDir(tmp_path).log_file.read_text()
