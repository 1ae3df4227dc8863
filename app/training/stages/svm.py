"""The SVMs: one linear SVM per class with hard-negative mining (docs/model.md §7.4).

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

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from sklearn.svm import LinearSVC
from torch import Tensor
from tqdm import tqdm

from app.inference.detector import Detector
from app.model.net import SppNet
from app.training.datasets import DetectionImages, each_image
from app.training.recipe import SvmConfig
from app.training.workdir import WorkDir

log = logging.getLogger(__name__)

#: Bias of the SVM of a class that had no positives (or no negatives) to train on.
NEVER_SCORE = -10.0


def _fit(
    positives: np.ndarray, negatives: np.ndarray, config: SvmConfig
) -> tuple[np.ndarray, float]:
    """liblinear's L2-regularised hinge loss (dual) on ``positives`` [P, F] (+1) and
    ``negatives`` [Q, F] (-1); returns ``(weight [F], bias)``."""
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


#: Negatives overlap every gt box of the class less than this (docs/model.md §7.4).
NEGATIVE_IOU = 0.3


def svm_features(
    net: SppNet,
    parts: list[DetectionImages],
    detector: Detector,
    variants: tuple[tuple[int, ...], ...],
    *,
    progress: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """fc7 of every window of every image, once per scale set of ``variants``.

    Returns:
        ``(fc7 Tensor[N, fc_dim] float16, overlaps Tensor[N, K] float16, own_class
        Tensor[N] long)``: a window's best IoU with a gt box of each class (difficult ones
        included), and the class of its own non-difficult gt box (-1 for proposals).
    """
    fc7_parts, overlap_parts, own_class_parts = [], [], []
    for part, image_id in tqdm(
        each_image(parts), desc="fc7 features for SVMs", disable=not progress
    ):
        w = part.windows[image_id]
        image = part.dataset.load_rgb(image_id)
        # Overlap with any gt box of the class, difficult ones included (docs/model.md §7.4).
        overlap = torch.maximum(w.class_iou, w.class_iou_difficult)
        own = torch.where(w.is_gt & ~w.gt_difficult, w.gt_class, -1)
        for scales in variants:
            with torch.inference_mode():
                pooled, _ = detector.pooled_windows(
                    image, w.boxes, scales, conv5_fn=part.cache.bind(image_id)
                )
                fc7_parts.append(net.det_head(pooled).half())
            overlap_parts.append(overlap.half())
            own_class_parts.append(own)
    fc7 = torch.cat(fc7_parts)
    del fc7_parts
    return fc7, torch.cat(overlap_parts), torch.cat(own_class_parts)


def train_svms(
    net: SppNet,
    fc7: Tensor,
    overlaps: Tensor,
    own_class: Tensor,
    classes: list[str],
    config: SvmConfig,
    *,
    progress: bool,
) -> tuple[float, dict[str, dict[str, int]]]:
    """Train every class's SVM (:func:`train_class_svm`) on :func:`svm_features` into
    ``net.svm`` (row ``c`` of class ``c``), with the feature scale 20 / mean fc7 norm.

    Returns ``(feature scale, stats by class name)``.
    """
    scale = 20.0 / float(fc7[:: max(1, len(fc7) // 20000)].float().norm(dim=1).mean())
    net.svm.feature_scale.fill_(scale)
    stats = {}
    for c, name in enumerate(tqdm(classes, desc="SVMs", disable=not progress)):
        positives = (fc7[own_class == c].float() * scale).numpy()
        negative_rows = ((overlaps[:, c] < NEGATIVE_IOU) & (own_class != c)).nonzero().squeeze(1)
        # Half precision, as stored: the miner scores them in float32 chunk by chunk.
        negatives = (fc7[negative_rows] * scale).numpy()
        weight, bias, stats[name] = train_class_svm(positives, negatives, config)
        net.svm.weight[c] = torch.from_numpy(weight)
        net.svm.bias[c] = bias
    return scale, stats


def load_or_train_svms(
    net: SppNet,
    parts: list[DetectionImages],
    detector: Detector,
    variants: tuple[tuple[int, ...], ...],
    classes: list[str],
    config: SvmConfig,
    work: WorkDir,
    *,
    progress: bool,
) -> None:
    """The SVMs: load ``net.svm`` from ``<work>/detect/svm.safetensors``, or train it and
    save it there (log event ``svm-done``)."""
    path = work.svm
    if path.is_file():
        stored = load_file(str(path))
        net.svm.weight.copy_(stored["weight"])
        net.svm.bias.copy_(stored["bias"])
        net.svm.feature_scale.copy_(stored["feature_scale"])
        return
    fc7, overlaps, own_class = svm_features(net, parts, detector, variants, progress=progress)
    scale, stats = train_svms(net, fc7, overlaps, own_class, classes, config, progress=progress)
    save_file(
        {
            "weight": net.svm.weight.detach().clone(),
            "bias": net.svm.bias.detach().clone(),
            "feature_scale": net.svm.feature_scale.detach().clone(),
        },
        str(path),
    )
    work.log_event("svm-done", feature_scale=scale, stats=stats)
