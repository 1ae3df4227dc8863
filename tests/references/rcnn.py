"""The R-CNN-style reference path for the same weights: one conv pass per window.

Each window is cropped from the image, warped to 224 x 224 (anisotropically, as R-CNN does,
without R-CNN's 16-pixel context padding), run through conv1..conv5 and pooled with the
full-map pyramid. It exists to compare speed (``bench/bench_features.py``) and features
(``tests/inference/test_rcnn.py``) with the SPP path, never to serve: it costs one trunk pass
per window instead of one per image and scale.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor

from app.model.preprocess import image_to_tensor
from app.model.store import SppModel
from app.ops.spp import spatial_pyramid_pool

WARP_SIZE = 224


def warp_window(image: np.ndarray, box: np.ndarray, size: int = WARP_SIZE) -> np.ndarray:
    """Crop ``box`` (inclusive pixel extents) from ``image`` and warp it to ``size`` x ``size``."""
    height, width = image.shape[:2]
    x1 = int(np.clip(np.floor(box[0]), 0, width - 1))
    y1 = int(np.clip(np.floor(box[1]), 0, height - 1))
    x2 = int(np.clip(np.ceil(box[2]), x1, width - 1))
    y2 = int(np.clip(np.ceil(box[3]), y1, height - 1))
    return cv2.resize(image[y1 : y2 + 1, x1 : x2 + 1], (size, size), interpolation=cv2.INTER_LINEAR)


@torch.inference_mode()
def rcnn_window_features(
    model: SppModel, image: np.ndarray, boxes: np.ndarray, *, batch_size: int = 32
) -> Tensor:
    """Pooled conv5 vectors of ``boxes [K, 4]`` computed window by window.

    Returns:
        Tensor[K, D] float32, the same layout as ``roi_spp`` (D = C5 * bins).
    """
    device = model.device
    levels = model.manifest.model.levels
    out = torch.empty((len(boxes), model.manifest.model.spp_dim), device=device)
    for start in range(0, len(boxes), batch_size):
        crops = [warp_window(image, box) for box in boxes[start : start + batch_size]]
        x = torch.cat([image_to_tensor(c, model.manifest.preprocess, device) for c in crops])
        out[start : start + len(crops)] = spatial_pyramid_pool(model.net.trunk(x), levels)
    return out
