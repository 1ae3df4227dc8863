"""Stage-1 samples: which objects are cropped, how scene views look, and the crop geometry."""

from __future__ import annotations

import numpy as np

from app.training.pretrain import (
    LabelledObject,
    PretrainConfig,
    epoch_context,
    object_crop,
    samples_of_image,
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
