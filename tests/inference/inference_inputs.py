"""Random images and windows shared by the inference tests (seeded, so every run is the same)."""

from __future__ import annotations

import numpy as np

#: The classes of the small random-weight detectors in ``conftest.py``.
CLASSES = ["circle", "square", "triangle", "star"]


def random_image(seed: int, height: int = 120, width: int = 160) -> np.ndarray:
    """Uniform noise, RGB uint8 ``[height, width, 3]``."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def random_boxes(seed: int, n: int, height: int = 120, width: int = 160) -> np.ndarray:
    """``n`` windows ``(x1, y1, x2, y2)`` float32 ``[n, 4]`` inside a ``height x width`` image,
    at least 4 px on a side before clipping to the last pixel."""
    rng = np.random.default_rng(seed)
    x1 = rng.uniform(0, width - 20, n)
    y1 = rng.uniform(0, height - 20, n)
    w = rng.uniform(4, width, n)
    h = rng.uniform(4, height, n)
    return np.stack(
        [x1, y1, np.minimum(x1 + w, width - 1), np.minimum(y1 + h, height - 1)], 1
    ).astype(np.float32)
