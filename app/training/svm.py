"""Stage 4: one linear SVM per class with hard-negative mining (SPEC section 7.4).

Features are fine-tuned fc7 outputs (after ReLU) scaled by 20 / mean L2 norm. Positives are
the class's non-difficult ground-truth boxes; negatives are windows with IoU < 0.3 to every
ground-truth box of the class. One pass of hard-negative mining: negatives scoring above
-1.0001 join the cache, the SVM is retrained once more than 2000 have joined, and negatives
below -1.2 are dropped at each retraining (and, a departure for a CPU budget, only the 30 000
hardest are kept). The solver is scikit-learn's ``LinearSVC``
(liblinear, L2-regularised hinge loss in the dual: ``-s 3 -c 1e-3 -w1 2 -B 10``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from sklearn.svm import LinearSVC

log = logging.getLogger(__name__)

#: Bias of the SVM of a class that had no positives (or no negatives) to train on.
NEVER_SCORE = -10.0


@dataclass(frozen=True)
class SvmConfig:
    """Hyper-parameters of stage 4 (liblinear's names in comments)."""

    C: float = 1e-3  # -c
    positive_weight: float = 2.0  # -w1
    intercept_scaling: float = 10.0  # -B
    hard_threshold: float = -1.0001  # negatives above this are hard
    easy_threshold: float = -1.2  # negatives below this are dropped when retraining
    retrain_after: int = 2000  # new hard negatives that trigger retraining
    initial_negatives: int = 4000  # random negatives of the first model
    max_cached: int = 30_000  # the hardest negatives kept when the cache grows beyond this
    max_iter: int = 2000  # liblinear iterations per fit
    chunk: int = 50_000  # negatives scored per mining step
    seed: int = 0


def _fit(
    positives: np.ndarray, negatives: np.ndarray, config: SvmConfig
) -> tuple[np.ndarray, float]:
    x = np.concatenate([positives, negatives]).astype(np.float32)
    y = np.concatenate([np.ones(len(positives)), -np.ones(len(negatives))])
    svm = LinearSVC(
        C=config.C,
        loss="hinge",
        dual=True,
        class_weight={1: config.positive_weight, -1: 1.0},
        intercept_scaling=config.intercept_scaling,
        max_iter=config.max_iter,
        random_state=config.seed,
    )
    svm.fit(x, y)
    return svm.coef_[0].astype(np.float32), float(svm.intercept_[0])


def train_class_svm(
    positives: np.ndarray, negatives: np.ndarray, config: SvmConfig
) -> tuple[np.ndarray, float, dict[str, int]]:
    """Train one class's SVM with one pass of hard-negative mining.

    Args:
        positives (ndarray[P, F]): scaled features of the positives.
        negatives (ndarray[Q, F]): scaled features of every negative window (in mining order).

    Returns:
        ``(weight [F], bias, stats)``.
    """
    if len(positives) == 0 or len(negatives) == 0:
        # Nothing to separate (a class absent from a tiny training set): a scorer that never
        # fires, rather than a failed run.
        empty = {"positives": len(positives), "negatives_cached": 0, "retrainings": 0}
        return np.zeros(positives.shape[1], np.float32), NEVER_SCORE, empty
    rng = np.random.default_rng(config.seed)
    first = rng.choice(len(negatives), min(config.initial_negatives, len(negatives)), replace=False)
    in_cache = np.zeros(len(negatives), dtype=bool)
    in_cache[first] = True
    weight, bias = _fit(positives, negatives[in_cache], config)
    added_since, retrainings = 0, 1
    for start in range(0, len(negatives), config.chunk):
        stop = min(start + config.chunk, len(negatives))
        scores = negatives[start:stop] @ weight + bias
        hard = (scores > config.hard_threshold) & ~in_cache[start:stop]
        in_cache[start:stop] |= hard
        added_since += int(hard.sum())
        if added_since > config.retrain_after:
            weight, bias = _fit(positives, negatives[in_cache], config)
            retrainings += 1
            added_since = 0
            cached = np.flatnonzero(in_cache)
            cached_scores = negatives[cached] @ weight + bias
            in_cache[cached[cached_scores < config.easy_threshold]] = False
            if in_cache.sum() > config.max_cached:  # keep the hardest ones
                cached = np.flatnonzero(in_cache)
                cached_scores = negatives[cached] @ weight + bias
                in_cache[cached[np.argsort(-cached_scores)[config.max_cached :]]] = False
    if added_since:
        weight, bias = _fit(positives, negatives[in_cache], config)
        retrainings += 1
    stats = {
        "positives": len(positives),
        "negatives_cached": int(in_cache.sum()),
        "retrainings": retrainings,
    }
    return weight, bias, stats
