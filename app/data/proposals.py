"""Region proposals: OpenCV's selective search in "fast" mode (SPEC section 5).

Selective search runs on a copy whose longest side is at most ``ProposalConfig.max_side``
(it dominates CPU time, and recall barely depends on resolution for objects of >= 24 px; see
``bench/``), the boxes are mapped back to the original frame, duplicates and degenerate
boxes are dropped, and the count is capped, keeping selective search's own order.
"""

from __future__ import annotations

import cv2
import numpy as np

from app.model.config import ProposalConfig


def _selective_search_rects(image_bgr: np.ndarray) -> np.ndarray:
    """Raw selective-search rectangles ``(x, y, w, h)``, int, in ``image_bgr``'s frame."""
    search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    search.setBaseImage(image_bgr)
    search.switchToSelectiveSearchFast()
    rects = search.process()
    return np.asarray(rects, dtype=np.int64).reshape(-1, 4)


def propose(
    image_rgb: np.ndarray,
    config: ProposalConfig | None = None,
    max_proposals: int | None = None,
) -> np.ndarray:
    """Selective-search proposals for one image.

    Args:
        image_rgb (ndarray[H, W, 3] uint8): the image, RGB.
        config: proposal settings; the defaults of :class:`ProposalConfig` when omitted.
        max_proposals: overrides ``config.max_proposals`` when given.

    Returns:
        ndarray[N, 4] float32: boxes ``(x1, y1, x2, y2)`` in ``image_rgb``'s pixel frame
        (0-based, inclusive pixel extents as in the VOC annotations), N <= the cap.
    """
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(
            "expected an RGB uint8 image of shape [H, W, 3], "
            f"got {image_rgb.dtype} {image_rgb.shape}"
        )
    config = config or ProposalConfig()
    cap = config.max_proposals if max_proposals is None else max_proposals
    height, width = image_rgb.shape[:2]
    longest = max(height, width)
    factor = 1.0
    small = image_rgb
    if 0 < config.max_side < longest:
        factor = longest / config.max_side
        size = (max(1, round(width / factor)), max(1, round(height / factor)))
        small = cv2.resize(image_rgb, size, interpolation=cv2.INTER_AREA)
    rects = _selective_search_rects(np.ascontiguousarray(small[:, :, ::-1]))
    if len(rects) == 0:
        return np.zeros((0, 4), dtype=np.float32)
    # A rect covers pixels [x, x + w) of the small copy; map its edges back, then express the
    # box as inclusive pixel extents, the convention of the annotations.
    fx = width / small.shape[1]
    fy = height / small.shape[0]
    x1 = rects[:, 0] * fx
    y1 = rects[:, 1] * fy
    x2 = (rects[:, 0] + rects[:, 2]) * fx - 1.0
    y2 = (rects[:, 1] + rects[:, 3]) * fy - 1.0
    boxes = np.stack([x1, y1, x2, y2], axis=1)
    np.clip(boxes[:, 0::2], 0.0, width - 1.0, out=boxes[:, 0::2])
    np.clip(boxes[:, 1::2], 0.0, height - 1.0, out=boxes[:, 1::2])
    boxes = np.round(boxes, 2).astype(np.float32)
    keep = (boxes[:, 2] - boxes[:, 0] >= config.min_size) & (
        boxes[:, 3] - boxes[:, 1] >= config.min_size
    )
    boxes = boxes[keep]
    _, first = np.unique(boxes, axis=0, return_index=True)
    boxes = boxes[np.sort(first)]
    return boxes[:cap]
