"""One monolithic OpenCV selective-search call: the reference the parallel search replaced.

``app.data.selective_search`` splits OpenCV's fast mode into reproducible parallel jobs whose
union is this call's set of boxes; the tests check that, and the benchmarks time both.
The monolithic call ranks boxes with the C library's unseeded ``rand()``, so its order (and any
cap taken from it) changes from call to call while the set does not.
"""

from __future__ import annotations

import cv2
import numpy as np

from app.data.proposals import boxes_in_original_frame, cap_proposals, proposal_cap, search_image
from app.data.selective_search import boxes_from_rects
from app.model.config import ProposalConfig


def opencv_fast_selective_search(image: np.ndarray, *, channel_order: str = "rgb") -> np.ndarray:
    """One ``switchToSelectiveSearchFast().process()`` call in OpenCV's own order.

    Args:
        image (ndarray[H, W, 3] uint8): the image, channels in ``channel_order``
            (``"rgb"`` or ``"bgr"``).

    Returns:
        ndarray[N, 4] float32: unique boxes ``[x1, y1, x2, y2]``, inclusive pixel extents.
    """
    if channel_order not in ("rgb", "bgr"):
        raise ValueError(f"expected channel_order 'rgb' or 'bgr', got {channel_order!r}")
    bgr = np.ascontiguousarray(image[:, :, ::-1] if channel_order == "rgb" else image)
    if bgr.shape[0] == 0 or bgr.shape[1] == 0:
        return np.zeros((0, 4), dtype=np.float32)
    search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    search.setBaseImage(bgr)
    search.switchToSelectiveSearchFast()
    return boxes_from_rects(np.asarray(search.process(), dtype=np.int32).reshape(-1, 4))


def search_boxes_monolithic(image_rgb: np.ndarray, config: ProposalConfig) -> np.ndarray:
    """``app.data.proposals.search_boxes`` with one monolithic call instead of the parallel
    jobs: the same set of boxes (ndarray[N, 4] float32, original frame), in OpenCV's order."""
    search = search_image(image_rgb, config)
    boxes = opencv_fast_selective_search(search.bgr, channel_order="bgr")
    return boxes_in_original_frame(search, boxes, config)


def propose_monolithic(
    image_rgb: np.ndarray,
    config: ProposalConfig | None = None,
    max_proposals: int | None = None,
) -> np.ndarray:
    """``app.data.proposals.propose`` through :func:`search_boxes_monolithic`: the same
    arguments and set before the cap, so the capped set changes from call to call."""
    config = config or ProposalConfig()
    cap = proposal_cap(config, max_proposals)
    return cap_proposals(search_boxes_monolithic(image_rgb, config), config, cap)
