"""Stage 5: per-class ridge regression of box deltas from pooled conv5 (SPEC section 7.5)."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import Ridge


def train_box_regressor(
    features: np.ndarray, targets: np.ndarray, alpha: float = 1000.0
) -> tuple[np.ndarray, np.ndarray]:
    """Fit ``targets [M, 4]`` (tx, ty, tw, th) from scaled pooled ``features [M, D]``.

    Returns ``(weight [4, D], bias [4])``; zeros when there are no samples.
    """
    if len(features) == 0:
        return np.zeros((4, features.shape[1]), np.float32), np.zeros(4, np.float32)
    ridge = Ridge(alpha=alpha, fit_intercept=True)
    ridge.fit(features.astype(np.float32), targets.astype(np.float32))
    return ridge.coef_.astype(np.float32), ridge.intercept_.astype(np.float32)
