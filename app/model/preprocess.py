"""Image -> network input: resizing to a scale (docs/model.md §4) and pixel normalisation."""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor

from app.model.config import PreprocessConfig
from app.ops.boxes import scaled_size


def resize_to_scale(
    image: np.ndarray, scale: int, max_long_side: int
) -> tuple[np.ndarray, float, float]:
    """Resize so the shorter side is ``scale`` (longer side capped at ``max_long_side``).

    Args:
        image (ndarray[H, W, 3] uint8): RGB image.

    Returns:
        ``(resized, fx, fy)``: the bilinear-resized image and the factors that map original
        x and y pixel coordinates into it.
    """
    height, width = image.shape[:2]
    new_h, new_w = scaled_size(height, width, scale, max_long_side)
    if (new_h, new_w) == (height, width):
        return image, 1.0, 1.0
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return resized, new_w / width, new_h / height


def image_to_tensor(
    image: np.ndarray, preprocess: PreprocessConfig, device: torch.device
) -> Tensor:
    """RGB uint8 ``[H, W, 3]`` -> ``Tensor[1, 3, H, W]`` float32 in the manifest's channel order,
    mean subtracted, no scaling (docs/model.md §1)."""
    x = torch.from_numpy(np.ascontiguousarray(image)).to(device)
    x = x.permute(2, 0, 1).float()  # [3, H, W], RGB
    if preprocess.channel_order == "BGR":
        x = x.flip(0)
    mean = torch.tensor(preprocess.pixel_mean, dtype=torch.float32, device=device)
    return (x - mean.view(3, 1, 1)).unsqueeze(0)
