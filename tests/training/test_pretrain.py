"""Stage-1 samples: which objects are cropped, how scene views look, and the crop geometry."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from app.model.config import ModelConfig, PreprocessConfig
from app.model.net import SppNet
from app.training.pretrain import (
    BACKGROUND_MAX_COVER,
    BACKGROUND_MAX_IOU,
    BACKGROUND_MIN_SIDE,
    LabelledObject,
    PretrainConfig,
    background_windows,
    epoch_context,
    epoch_size,
    holds_no_object,
    object_crop,
    pretrain,
    samples_of_image,
    step_lr,
)


def test_difficult_objects_are_left_out_and_many_objects_give_no_scene_view() -> None:
    boxes = np.array([[10, 10, 49, 49], [60, 60, 99, 79], [0, 0, 9, 9]], dtype=np.float32)
    samples = samples_of_image(7, (100, 120), boxes, [0, 3, 5], np.array([0, 0, 1]), 4)
    assert [(s.image_index, s.class_id, s.context) for s in samples] == [
        (7, 0, None),
        (7, 3, None),
    ]
    assert samples[1].box == (60.0, 60.0, 99.0, 79.0)


def test_a_lone_object_adds_scene_views_at_its_share_of_the_image() -> None:
    boxes = np.array([[100, 50, 139, 79]], dtype=np.float32)  # 40 x 30 px in a 200 x 300 image
    samples = samples_of_image(0, (200, 300), boxes, [2], np.array([0]), 3)
    assert len(samples) == 4
    assert samples[0].context is None
    assert all(s.context == 40 / 200 for s in samples[1:])
    assert all(s.class_id == 2 and s.box == samples[0].box for s in samples)


def test_a_lone_object_filling_the_image_caps_the_share() -> None:
    boxes = np.array([[0, 0, 299, 199]], dtype=np.float32)
    (_, scene) = samples_of_image(0, (200, 300), boxes, [1], np.array([0]), 1)
    assert scene.context == 0.95


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
    finished = replace(base, finish_epochs=2, finish_lr=5e-4)
    _tiny_run(base, tmp_path / "resumed" / "checkpoint", images)
    resumed, resumed_history = _tiny_run(finished, tmp_path / "resumed" / "checkpoint", images)
    fresh, fresh_history = _tiny_run(finished, tmp_path / "fresh" / "checkpoint", images)
    assert [h["epoch"] for h in resumed_history] == [1, 2, 3, 4]
    assert [h["loss"] for h in resumed_history] == [h["loss"] for h in fresh_history]
    for (name, a), b in zip(resumed.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def _holds_no_object_by_hand(window: tuple[float, ...], boxes: np.ndarray) -> bool:
    """The background test written out, one object at a time."""
    x1, y1, x2, y2 = window
    for bx1, by1, bx2, by2 in boxes.tolist():
        iw = max(0.0, min(x2, bx2) - max(x1, bx1))
        ih = max(0.0, min(y2, by2) - max(y1, by1))
        area = (bx2 - bx1) * (by2 - by1)
        if iw * ih >= BACKGROUND_MAX_COVER * area:
            return False
        if iw * ih / ((x2 - x1) * (y2 - y1) + area - iw * ih) >= BACKGROUND_MAX_IOU:
            return False
    return True


def test_holds_no_object_matches_the_test_written_out() -> None:
    rng = np.random.default_rng(5)
    boxes = np.array([[20, 30, 79, 89], [150, 40, 189, 79], [100, 150, 259, 229]], np.float32)
    corners = rng.uniform(0, 300, (400, 2))
    windows = np.concatenate([corners, corners + rng.uniform(5, 200, (400, 2))], axis=1)
    windows = np.concatenate([windows, boxes, [[25, 35, 75, 85]]])  # objects, one inside one
    got = holds_no_object(windows, boxes)
    expected = [_holds_no_object_by_hand(tuple(w), boxes) for w in windows.tolist()]
    assert got.tolist() == expected
    assert 0 < sum(expected) < len(expected) and not any(expected[-4:])


def test_background_windows_from_proposals_are_proposals_that_hold_no_object() -> None:
    boxes = np.array([[20, 30, 79, 89], [150, 40, 189, 79]], np.float32)
    fine = [[200, 100, 260, 150], [0, 120, 40, 200], [90, 0, 140, 30]]
    candidates = np.array(
        [
            *fine,
            [20, 30, 79, 89],  # an object
            [10, 20, 90, 100],  # holds an object whole
            [200, 200, 210, 210],  # smaller than BACKGROUND_MIN_SIDE
        ],
        np.float32,
    )
    picked = background_windows(np.random.default_rng(0), (240, 320), boxes, 2, candidates)
    assert len(picked) == 2 and len(set(picked)) == 2
    assert {tuple(w) for w in picked} <= {tuple(map(float, w)) for w in fine}
    every = background_windows(np.random.default_rng(0), (240, 320), boxes, 10, candidates)
    assert sorted(every) == sorted(tuple(map(float, w)) for w in fine)
    again = background_windows(np.random.default_rng(0), (240, 320), boxes, 2, candidates)
    assert again == picked
    assert background_windows(np.random.default_rng(0), (240, 320), boxes, 2, candidates[3:]) == []


def test_background_source_is_checked() -> None:
    assert PretrainConfig(background_source="proposals").background_source == "proposals"
    with pytest.raises(ValueError, match="background_source"):
        PretrainConfig(background_source="clutter")


def test_background_windows_hold_no_object() -> None:
    """Every window is a square inside the image, overlaps each object with IoU < 0.3 and
    covers less than half of it, so no whole object hides in a background sample."""
    boxes = np.array([[20, 30, 79, 89], [150, 40, 189, 79], [100, 150, 259, 229]], np.float32)
    windows = background_windows(np.random.default_rng(3), (240, 320), boxes, 200)
    assert len(windows) > 50
    for x1, y1, x2, y2 in windows:
        assert np.isclose(x2 - x1, y2 - y1) and x2 - x1 >= BACKGROUND_MIN_SIDE
        assert x1 >= 0 and y1 >= 0 and x2 <= 320 and y2 <= 240
        assert _holds_no_object_by_hand((x1, y1, x2, y2), boxes)


def test_background_windows_are_reproducible_and_need_room() -> None:
    boxes = np.array([[10, 10, 50, 50]], np.float32)
    a = background_windows(np.random.default_rng(1), (100, 120), boxes, 4)
    b = background_windows(np.random.default_rng(1), (100, 120), boxes, 4)
    assert a == b and len(a) == 4
    assert background_windows(np.random.default_rng(1), (20, 120), boxes, 4) == []


def test_background_samples_are_the_extra_class_cropped_exactly() -> None:
    boxes = np.array([[10, 10, 49, 49]], dtype=np.float32)
    samples = samples_of_image(
        2,
        (200, 300),
        boxes,
        [1],
        np.array([0]),
        0,
        background=3,
        background_class=6,
        rng=np.random.default_rng(0),
    )
    background = [s for s in samples if s.class_id == 6]
    assert len(background) == 3 and len(samples) == 4
    assert all(s.context == 1.0 and s.image_index == 2 for s in background)
    with pytest.raises(ValueError, match="rng"):
        samples_of_image(0, (200, 300), boxes, [1], np.array([0]), 0, background=1)
