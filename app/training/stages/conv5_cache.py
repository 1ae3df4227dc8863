"""The conv5 cache: conv5 once per training image and scale, on disk (docs/model.md §7.2).

The trunk is frozen after pre-training, so every later stage (fine-tuning samples, SVM
features, regression features, calibration) reads conv5 from here instead of recomputing it.
Files are ``<root>/<image_id>@<scale>.safetensors`` in half precision, the resize factors in
their metadata.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, safe_open, save_file
from torch import Tensor

from app.inference.detector import Detector


class Conv5Cache:
    """A disk cache of conv5 maps for one detector, used as its ``conv5_fn``."""

    def __init__(self, root: Path, detector: Detector) -> None:
        self.root = root
        self.detector = detector
        root.mkdir(parents=True, exist_ok=True)
        self._image_id = ""

    def bind(self, image_id: str) -> Conv5Cache:
        """Set the image the next calls refer to (conv5 functions receive pixels only)."""
        self._image_id = image_id
        return self

    def __call__(self, image: np.ndarray, scale: int) -> tuple[Tensor, float, float]:
        path = self.root / f"{self._image_id}@{scale}.safetensors"
        if path.is_file():
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata()
            conv5 = load_file(str(path))["conv5"].to(self.detector.device, torch.float32)
            return conv5, float(meta["fx"]), float(meta["fy"])
        conv5, fx, fy = self.detector.conv5_at_scale(image, scale)
        tmp = path.with_suffix(".tmp")
        save_file(
            {"conv5": conv5.half().cpu().contiguous()},
            str(tmp),
            metadata={"fx": repr(fx), "fy": repr(fy)},
        )
        tmp.replace(path)
        # Serve what later reads will see, so a cold and a warm cache give identical features.
        return conv5.half().float(), fx, fy
