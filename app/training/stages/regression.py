"""Box regression: per-class ridge regression of box deltas from pooled conv5 (docs/model.md §7.5).

Each class's regressor maps the pooled conv5 vector of a positive window (IoU >= 0.5 with a
gt box of the class; the fine-tuning samples) to the deltas ``(tx, ty, tw, th)`` that move
it onto that gt box. Features are scaled by 20 / their mean L2 norm, a factor the network
applies at inference (``net.bbox.feature_scale``).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import Ridge

from app.model.net import SppNet
from app.training.stages.finetune import WindowSamples
from app.training.workdir import WorkDir


def train_box_regressor(
    features: np.ndarray, targets: np.ndarray, alpha: float = 1000.0
) -> tuple[np.ndarray, np.ndarray]:
    """Fit ``targets [M, 4]`` (tx, ty, tw, th) from scaled pooled ``features [M, D]``.

    Minimises ``|X W^T + b - T|^2 + alpha |W|^2`` (the bias is not penalised).

    Returns ``(weight [4, D], bias [4])``; zeros when there are no samples.
    """
    if len(features) == 0:
        return np.zeros((4, features.shape[1]), np.float32), np.zeros(4, np.float32)
    ridge = Ridge(alpha=alpha, fit_intercept=True)
    ridge.fit(features.astype(np.float32), targets.astype(np.float32))
    return ridge.coef_.astype(np.float32), ridge.intercept_.astype(np.float32)


def train_regressors(
    net: SppNet, samples: WindowSamples, num_classes: int, alpha: float, work: WorkDir
) -> None:
    """Fit every class's regressor on its positives of ``samples`` into ``net.bbox`` (rows
    ``4c .. 4c+3`` of class ``c``), with the feature scale, and log ``bbox-done``."""
    features = samples.features  # float16; converted per chunk and per class
    norms = torch.cat([f.float().norm(dim=1) for f in features.split(65536)])
    scale = 20.0 / float(norms.mean())
    net.bbox.feature_scale.fill_(scale)
    dim = features.shape[1]
    for c in range(num_classes):
        mine = (samples.labels == c + 1).nonzero().squeeze(1)
        weight, bias = train_box_regressor(
            (features[mine].float() * scale).numpy(), samples.targets[mine].numpy(), alpha
        )
        net.bbox.weight[4 * c : 4 * c + 4] = torch.from_numpy(weight).view(4, dim)
        net.bbox.bias[4 * c : 4 * c + 4] = torch.from_numpy(bias)
    work.log_event("bbox-done", feature_scale=scale, samples=int((samples.labels > 0).sum()))
