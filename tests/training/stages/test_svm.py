"""The SVM trainer on 2-D points whose max-margin separators are worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from app.training.recipe import SvmConfig
from app.training.stages.svm import NEVER_SCORE, train_class_svm

#: Positives on the line x = 3 (and one at x = 4).
POSITIVES = np.array([[3.0, y] for y in (-2, -1, 0, 1, 2)] + [[4.0, 0.0]], np.float32)
#: Easy negatives far left (x in -5..-3), and one hard negative at x = 1, last.
EASY = np.array([[-3.0 - i % 3, i % 7 - 3.0] for i in range(40)], np.float32)
HARD = np.array([1.0, 0.0], np.float32)
NEGATIVES = np.concatenate([EASY, HARD[None]])
FIRST = 10  # negatives of the first model


def _seed_whose_first_draw_misses_the_hard_negative() -> int:
    """A seed whose ``FIRST`` random negatives (drawn as ``initial_negatives`` are: without
    replacement, by ``default_rng(seed)``) leave out the hard one."""
    for seed in range(100):
        first = np.random.default_rng(seed).choice(len(NEGATIVES), FIRST, replace=False)
        if len(NEGATIVES) - 1 not in first:
            return seed
    raise AssertionError("no such seed")


def _config(**overrides: float) -> SvmConfig:
    """Nearly hard-margin SVMs (large C), retrained as soon as one hard negative joins."""
    fields = {
        "C": 10.0,
        "positive_weight": 1.0,
        "initial_negatives": FIRST,
        "retrain_after": 0,
        "max_iter": 100_000,
        "seed": _seed_whose_first_draw_misses_the_hard_negative(),
    }
    return SvmConfig.model_validate({**fields, **overrides})


def test_without_mining_the_hard_negative_is_scored_positive() -> None:
    """The first model separates x = 3 from the easy negatives at x = -3: by hand the
    max-margin separator is w = (1/3, 0), b = 0, and the hard negative at x = 1 scores 1/3."""
    weight, bias, stats = train_class_svm(POSITIVES, NEGATIVES, _config(hard_threshold=1e9))
    assert stats == {"positives": 6, "negatives_cached": FIRST, "retrainings": 1}
    np.testing.assert_allclose(weight, [1 / 3, 0.0], atol=1e-2)
    assert bias == pytest.approx(0.0, abs=1e-2)
    assert float(HARD @ weight + bias) > 0


def test_the_mined_hard_negative_joins_the_training_set_and_is_scored_negative() -> None:
    """Mining finds the hard negative (score 1/3 > -1.0001) and retrains: the separator moves
    to the middle of x = 1 and x = 3, w = (1, 0), b = -2, the hard negative on the margin
    (score -1). Retraining drops the easy negatives (score about -5 < -1.2): the cache ends
    holding the hard one only."""
    weight, bias, stats = train_class_svm(POSITIVES, NEGATIVES, _config())
    assert stats == {"positives": 6, "negatives_cached": 1, "retrainings": 2}
    np.testing.assert_allclose(weight, [1.0, 0.0], atol=1e-2)
    assert bias == pytest.approx(-2.0, abs=1e-2)
    assert float(HARD @ weight + bias) == pytest.approx(-1.0, abs=1e-2)
    assert (POSITIVES @ weight + bias).min() > 0.99
    assert (EASY @ weight + bias).max() < -4.9


def test_mining_scores_every_chunk() -> None:
    """Chunks of 7 negatives, a retraining after each chunk that added one: the hard
    negative, in the last chunk, is still found and the same separator comes out."""
    weight, bias, stats = train_class_svm(POSITIVES, NEGATIVES, _config(chunk=7))
    np.testing.assert_allclose(weight, [1.0, 0.0], atol=1e-2)
    assert bias == pytest.approx(-2.0, abs=1e-2)
    assert stats["retrainings"] > 2


def test_a_class_without_positives_never_fires() -> None:
    weight, bias, stats = train_class_svm(np.zeros((0, 2), np.float32), NEGATIVES, _config())
    assert weight.tolist() == [0.0, 0.0] and bias == NEVER_SCORE
    assert stats == {"positives": 0, "negatives_cached": 0, "retrainings": 0}
    _, bias, _ = train_class_svm(POSITIVES, np.zeros((0, 2), np.float32), _config())
    assert bias == NEVER_SCORE
