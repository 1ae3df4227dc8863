"""Selective-search proposals: frame, de-duplication, degenerate boxes, cap, downscaling."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from app.data.proposals import propose
from app.model.config import ProposalConfig


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    """A 240 x 320 image with three flat shapes on a smooth background."""
    image = np.full((240, 320, 3), 200, np.uint8)
    image[:, :, 0] = np.linspace(120, 220, 320, dtype=np.uint8)[None, :]
    cv2.rectangle(image, (30, 40), (110, 120), (200, 30, 30), -1)
    cv2.circle(image, (220, 80), 45, (30, 160, 30), -1)
    cv2.fillPoly(image, [np.array([[120, 220], [200, 140], [280, 220]])], (20, 20, 180))
    return image


def test_boxes_are_inside_the_image_and_unique(scene: np.ndarray) -> None:
    boxes = propose(scene, ProposalConfig(max_side=0))
    assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 4
    assert len(boxes) > 3
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= 319).all() and (boxes[:, 3] <= 239).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert len(np.unique(boxes, axis=0)) == len(boxes)


def test_the_drawn_square_is_found(scene: np.ndarray) -> None:
    boxes = propose(scene, ProposalConfig(max_side=0))
    target = np.array([30, 40, 110, 120], np.float32)
    assert np.abs(boxes - target).max(axis=1).min() <= 2.0


def test_downscaled_search_maps_boxes_back(scene: np.ndarray) -> None:
    big = cv2.resize(scene, (640, 480), interpolation=cv2.INTER_NEAREST)
    boxes = propose(big, ProposalConfig(max_side=320))
    target = np.array([60, 80, 221, 241], np.float32)
    assert np.abs(boxes - target).max(axis=1).min() <= 4.0
    assert (boxes[:, 2] <= 639).all() and (boxes[:, 3] <= 479).all()


def test_cap_and_min_size(scene: np.ndarray) -> None:
    assert len(propose(scene, ProposalConfig(max_side=0), max_proposals=5)) == 5
    boxes = propose(scene, ProposalConfig(max_side=0, min_size=60))
    assert ((boxes[:, 2] - boxes[:, 0] >= 60) & (boxes[:, 3] - boxes[:, 1] >= 60)).all()


def test_rejects_non_rgb_input() -> None:
    with pytest.raises(ValueError, match=r"expected an RGB uint8 image of shape \[H, W, 3\]"):
        propose(np.zeros((10, 10), np.uint8))
