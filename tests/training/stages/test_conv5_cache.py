"""Stage 2's conv5 cache: a miss computes and writes, a hit reads back the very same tensor,
and another image or scale never reads a map that is not its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

from app.inference.detector import Detector
from app.training.stages.conv5_cache import Conv5Cache


class CountingDetector(Detector):
    """A CPU detector that counts its conv5 computations."""

    def __init__(self, model: Any) -> None:
        super().__init__(model, "cpu")
        self.computed: list[int] = []

    def conv5_at_scale(self, image: np.ndarray, scale: int) -> tuple[Tensor, float, float]:
        self.computed.append(scale)
        return super().conv5_at_scale(image, scale)


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (70, 90, 3), dtype=np.uint8)


@pytest.fixture
def detector(tiny_model: Any) -> CountingDetector:
    return CountingDetector(tiny_model)


def test_a_miss_computes_and_a_hit_reads_back_bit_identical(
    tmp_path: Path, detector: CountingDetector
) -> None:
    cache = Conv5Cache(tmp_path / "conv5", detector)
    image = _image(0)
    direct, fx, fy = Detector(detector.model, "cpu").conv5_at_scale(image, 96)
    cold = cache.bind("a")(image, 96)
    assert detector.computed == [96]
    assert (tmp_path / "conv5" / "a@96.safetensors").is_file()
    warm = cache.bind("a")(image, 96)
    again = Conv5Cache(tmp_path / "conv5", detector).bind("a")(image, 96)  # a new process
    assert detector.computed == [96], "hits compute nothing"
    for got in (cold, warm, again):
        assert torch.equal(got[0], direct.half().float()), "half precision, as stored"
        assert got[0].dtype == torch.float32
        assert got[1:] == (fx, fy)


def test_another_image_or_scale_is_a_miss_and_gets_its_own_map(
    tmp_path: Path, detector: CountingDetector
) -> None:
    cache = Conv5Cache(tmp_path, detector)
    first, second = _image(0), _image(1)
    reference = Detector(detector.model, "cpu")
    cache.bind("a")(first, 96)
    other_image = cache.bind("b")(second, 96)
    other_scale = cache.bind("a")(first, 64)
    assert detector.computed == [96, 96, 64]
    assert torch.equal(other_image[0], reference.conv5_at_scale(second, 96)[0].half().float())
    assert torch.equal(other_scale[0], reference.conv5_at_scale(first, 64)[0].half().float())
    assert not torch.equal(other_image[0], cache.bind("a")(first, 96)[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a@64.safetensors",
        "a@96.safetensors",
        "b@96.safetensors",
    ]


def test_pooled_windows_through_the_cache_equal_a_cold_cache_and_a_warm_one(
    tmp_path: Path, detector: CountingDetector
) -> None:
    image = _image(2)
    boxes = torch.tensor([[0.0, 0.0, 40.0, 30.0], [10.0, 20.0, 89.0, 69.0]])
    cache = Conv5Cache(tmp_path, detector)
    cold, used = detector.pooled_windows(image, boxes, (64, 96), conv5_fn=cache.bind("x"))
    warm, _ = detector.pooled_windows(image, boxes, (64, 96), conv5_fn=cache.bind("x"))
    assert len(detector.computed) == len(used)
    assert torch.equal(cold, warm)
