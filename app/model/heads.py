"""Heads on top of the pooled conv5 vector (docs/model.md §6).

* :class:`FcHead` - fc6 + ReLU + dropout, fc7 + ReLU + dropout.
* :class:`SvmScorer` - one linear SVM per class on scaled fc7 features.
* :class:`BoxRegressor` - one ridge regressor per class on the scaled pooled vector.
* :class:`PlattCalibration` - per-class sigmoid turning an SVM score into a probability.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class FcHead(nn.Module):
    """fc6 (D -> F) + ReLU + dropout, fc7 (F -> F7) + ReLU + dropout (``F7 = out_dim or F``).

    Input ``Tensor[N, D]`` pooled vectors, output ``Tensor[N, F7]`` (after the fc7 ReLU).
    """

    def __init__(
        self, in_dim: int, fc_dim: int, dropout: float, out_dim: int | None = None
    ) -> None:
        super().__init__()
        self.fc6 = nn.Linear(in_dim, fc_dim)
        self.fc7 = nn.Linear(fc_dim, fc_dim if out_dim is None else out_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = self.dropout(torch.relu(self.fc6(x)))
        return self.dropout(torch.relu(self.fc7(x)))


class SvmScorer(nn.Module):
    """Per-class linear SVMs: ``scores = (features * feature_scale) @ weight.T + bias``.

    ``feature_scale`` is 20 / (mean L2 norm of training fc7 features) (docs/model.md §6).
    Input ``Tensor[N, F]``, output ``Tensor[N, K]`` raw SVM scores.
    """

    feature_scale: Tensor

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(num_classes, dim), requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(num_classes), requires_grad=False)
        self.register_buffer("feature_scale", torch.ones(()))

    def forward(self, features: Tensor) -> Tensor:
        return torch.addmm(self.bias, features * self.feature_scale, self.weight.t())


class BoxRegressor(nn.Module):
    """Per-class linear box regressors from the scaled pooled vector (docs/model.md §6).

    Input ``Tensor[N, D]``, output ``Tensor[N, K, 4]`` deltas ``(tx, ty, tw, th)``.
    """

    feature_scale: Tensor

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.weight = nn.Parameter(torch.zeros(num_classes * 4, dim), requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(num_classes * 4), requires_grad=False)
        self.register_buffer("feature_scale", torch.ones(()))

    def forward(self, features: Tensor) -> Tensor:
        deltas = torch.addmm(self.bias, features * self.feature_scale, self.weight.t())
        return deltas.view(-1, self.num_classes, 4)  # [N, K, 4]


class PlattCalibration(nn.Module):
    """``confidence = sigmoid(a * score + b)`` per class, fitted on the val split.

    Input ``Tensor[N, K]`` SVM scores, output ``Tensor[N, K]`` probabilities in [0, 1].
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.ones(num_classes), requires_grad=False)
        self.b = nn.Parameter(torch.zeros(num_classes), requires_grad=False)

    def forward(self, scores: Tensor) -> Tensor:
        return torch.sigmoid(scores * self.a + self.b)
