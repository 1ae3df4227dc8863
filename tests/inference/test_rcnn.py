"""The R-CNN-style reference path (tests/references/rcnn.py): one trunk pass per warped window."""

from __future__ import annotations

import numpy as np
import torch
from references.rcnn import WARP_SIZE, rcnn_window_features, warp_window

from app.model.preprocess import image_to_tensor
from app.model.store import SppModel, build_random_model
from app.ops.spp import spatial_pyramid_pool


def _model() -> SppModel:
    return build_random_model(["circle", "square", "triangle"], width=0.125, fc_dim=32, seed=0)


def test_shape_and_dtype() -> None:
    model = _model()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(60, 90, 3), dtype=np.uint8)
    boxes = np.array([[0, 0, 30, 20], [10, 5, 89, 59], [40, 40, 41, 41]], dtype=np.float32)
    features = rcnn_window_features(model, image, boxes, batch_size=2)  # two batches
    assert features.shape == (3, model.manifest.model.spp_dim)
    assert features.dtype == torch.float32
    assert torch.isfinite(features).all()


def test_empty_windows() -> None:
    model = _model()
    image = np.zeros((40, 40, 3), dtype=np.uint8)
    features = rcnn_window_features(model, image, np.zeros((0, 4), dtype=np.float32))
    assert features.shape == (0, model.manifest.model.spp_dim)


def test_whole_image_window_equals_full_map_pyramid() -> None:
    """A window covering a 224 x 224 image is not warped, so its vector is the full-map SPP
    of the trunk output of that image (exact: same input, same ops)."""
    model = _model()
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(WARP_SIZE, WARP_SIZE, 3), dtype=np.uint8)
    box = np.array([[0, 0, WARP_SIZE - 1, WARP_SIZE - 1]], dtype=np.float32)
    assert np.array_equal(warp_window(image, box[0]), image)
    features = rcnn_window_features(model, image, box)
    with torch.inference_mode():
        x = image_to_tensor(image, model.manifest.preprocess, torch.device("cpu"))
        expected = spatial_pyramid_pool(model.net.trunk(x), model.manifest.model.levels)
    torch.testing.assert_close(features, expected, rtol=0, atol=0)


def test_windows_are_independent_of_batching() -> None:
    model = _model()
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, size=(50, 70, 3), dtype=np.uint8)
    boxes = np.array([[0, 0, 69, 49], [5, 5, 35, 45], [20, 10, 60, 30]], dtype=np.float32)
    together = rcnn_window_features(model, image, boxes, batch_size=3)
    one_by_one = torch.cat([rcnn_window_features(model, image, boxes[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(together, one_by_one, rtol=1e-5, atol=1e-4)
