"""Stage 1's training loop: the crop geometry, the schedules, and resuming from a checkpoint."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import torch

from app.model.config import ModelConfig, PreprocessConfig
from app.model.net import SppNet
from app.training.recipe import PretrainConfig
from app.training.stages.pretrain import (
    epoch_context,
    epoch_size,
    object_crop,
    pretrain,
    step_lr,
)
from app.training.stages.pretrain_samples import LabelledObject


def test_a_fixed_context_crop_keeps_the_object_at_that_share() -> None:
    """A white square of side 20 on black, cropped at context 0.25 into 80 px, spans 20 px."""
    image = np.zeros((200, 200, 3), dtype=np.uint8)
    image[90:110, 60:80] = 255
    sample = LabelledObject(0, (60.0, 90.0, 79.0, 109.0), 0, context=0.25)
    assert sample.context is not None
    crop = object_crop(
        image, sample.box, np.random.default_rng(0), 80, (sample.context, sample.context)
    )
    rows = np.flatnonzero(crop[:, :, 0].max(axis=1) > 127)
    cols = np.flatnonzero(crop[:, :, 0].max(axis=0) > 127)
    assert crop.shape == (80, 80, 3)
    assert 19 <= rows.size <= 21 and 19 <= cols.size <= 21


def test_the_context_curriculum_goes_from_start_to_the_lower_bound() -> None:
    config = PretrainConfig(epochs=5, context=(0.3, 0.95), context_start=0.7)
    assert epoch_context(config, 0) == (0.7, 0.95)
    assert np.isclose(epoch_context(config, 4)[0], 0.3)
    assert epoch_context(config, 2)[0] < epoch_context(config, 1)[0]


def test_the_finishing_phase_keeps_the_final_context_and_the_full_sizes() -> None:
    config = PretrainConfig(
        epochs=5, warmup_epochs=3, sizes=(224, 180), context_start=0.7, finish_epochs=3
    )
    assert config.total_epochs == 8
    assert [epoch_context(config, e) for e in (5, 6, 7)] == [epoch_context(config, 4)] * 3
    assert [epoch_size(config, e) for e in range(2, 8)] == [
        (112, 112),
        (224, 180),
        (224, 224),
        (224, 180),
        (224, 224),
        (224, 180),
    ]


def test_the_learning_rate_schedule_and_its_finishing_phase() -> None:
    """The first ``epochs`` follow the cosine over ``epochs`` alone, whatever the finishing
    phase; the finishing phase restarts at ``finish_lr`` and decays towards 0."""
    plain = PretrainConfig(epochs=4, lr=1e-3)
    finished = PretrainConfig(epochs=4, lr=1e-3, finish_epochs=2, finish_lr=3e-4)
    steps = 10
    for epoch in range(4):
        for step in range(steps):
            by_hand = 1e-3 * 0.5 * (1 + math.cos(math.pi * (epoch * steps + step) / (4 * steps)))
            assert step_lr(plain, epoch, step, steps) == by_hand
            assert step_lr(finished, epoch, step, steps) == by_hand
    phase = [step_lr(finished, epoch, step, steps) for epoch in (4, 5) for step in range(steps)]
    assert phase[0] == 3e-4
    assert all(a > b for a, b in itertools.pairwise(phase))
    assert phase[-1] < 3e-4 * 0.01


def _tiny_run(
    config: PretrainConfig, checkpoint: Path, images: list[np.ndarray]
) -> tuple[SppNet, list[dict[str, float]]]:
    torch.manual_seed(0)
    net = SppNet(ModelConfig(width=0.125, fc_dim=16, num_classes=2))
    objects = [LabelledObject(i % 2, (8.0 + i, 8.0, 40.0 + i, 40.0 + i), i % 2) for i in range(6)]
    history = pretrain(net, images, objects, config, PreprocessConfig(), checkpoint, progress=False)
    return net, history


def test_a_finishing_phase_resumed_from_a_checkpoint_equals_a_fresh_run(tmp_path: Path) -> None:
    """Adding ``finish_epochs`` to a finished run resumes it: the result is the run that had
    the phase from the start, to the bit (CPU), dropout masks included."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (64, 80, 3), dtype=np.uint8) for _ in range(2)]
    base = PretrainConfig(epochs=2, batch_size=4, sizes=(64, 48), context_start=0.9)
    finished = base.model_copy(update={"finish_epochs": 2, "finish_lr": 5e-4})
    _tiny_run(base, tmp_path / "resumed" / "checkpoint", images)
    resumed, resumed_history = _tiny_run(finished, tmp_path / "resumed" / "checkpoint", images)
    fresh, fresh_history = _tiny_run(finished, tmp_path / "fresh" / "checkpoint", images)
    assert [h["epoch"] for h in resumed_history] == [1, 2, 3, 4]
    assert [h["loss"] for h in resumed_history] == [h["loss"] for h in fresh_history]
    for (name, a), b in zip(resumed.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
