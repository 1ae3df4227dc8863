"""Region proposals: OpenCV's selective search in "fast" mode (docs/model.md §5), run as the
exact, reproducible parallel jobs of :mod:`app.data.selective_search`.

:func:`propose` in order:

1. downscale (``INTER_AREA``) to a copy whose longest side is at most
   ``ProposalConfig.max_side`` (selective search dominates CPU time, and recall barely depends
   on resolution for objects of >= 24 px; see ``bench/bench_proposals.py``);
2. selective search on that copy, every box, in the merge order of
   :mod:`app.data.selective_search` (a fixed function of the image: the same boxes in the same
   order for any number of workers, in one process and across restarts);
3. boxes mapped back to the original frame (an inclusive extent ``[x1, x2]`` of the copy covers
   original pixels ``[x1 * f, (x2 + 1) * f - 1]``), clipped, rounded to 0.01 px;
4. boxes narrower or shorter than ``min_size`` original pixels dropped, repeats dropped
   (first occurrence kept);
5. the cap: the first ``max_proposals`` boxes.

Every step keeps the order and the cap comes last, so the proposals at cap ``c`` are the
first ``c`` of the uncapped list (:func:`search_boxes` then :func:`cap_proposals`): a cache may
store the uncapped list and serve any cap from it.

The reference the parallel search replaced, one OpenCV call in OpenCV's own unseeded order (its
capped set changes from call to call), is ``tests/references/selective_search.py``; the tests
and benchmarks compare with it.
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass

import cv2
import numpy as np

from app.data.selective_search import selective_search_parallel
from app.model.config import ProposalConfig

#: Names the search and its order; part of every cache key of proposals (on disk and in
#: memory), so a change of method never serves another method's boxes.
SEARCH_METHOD = "opencv-fast-parallel-merge-v1"


@dataclass(frozen=True)
class SearchImage:
    """The copy selective search runs on, and the frame its boxes go back to.

    Attributes:
        bgr (ndarray[h, w, 3] uint8): the downscaled copy, BGR, contiguous.
        width, height: the original image's size (px).
    """

    bgr: np.ndarray
    width: int
    height: int


def search_image(image_rgb: np.ndarray, config: ProposalConfig) -> SearchImage:
    """Step 1: the copy of ``image_rgb`` (ndarray[H, W, 3] uint8, RGB) that selective search
    runs on, its longest side at most ``config.max_side`` (the image itself when smaller or
    when ``max_side`` is 0)."""
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(
            "expected an RGB uint8 image of shape [H, W, 3], "
            f"got {image_rgb.dtype} {image_rgb.shape}"
        )
    height, width = image_rgb.shape[:2]
    longest = max(height, width)
    small = image_rgb
    if 0 < config.max_side < longest:
        factor = longest / config.max_side
        size = (max(1, round(width / factor)), max(1, round(height / factor)))
        small = cv2.resize(image_rgb, size, interpolation=cv2.INTER_AREA)
    return SearchImage(np.ascontiguousarray(small[:, :, ::-1]), width, height)


def boxes_in_original_frame(
    search: SearchImage, boxes: np.ndarray, config: ProposalConfig
) -> np.ndarray:
    """Steps 3 and 4: selective-search boxes of the copy -> proposals of the original, uncapped.

    Args:
        search: the copy the boxes were found on.
        boxes (ndarray[N, 4] float32): inclusive extents ``[x1, y1, x2, y2]`` in the copy's
            frame, in selective-search order.
        config: ``min_size`` is used.

    Returns:
        ndarray[M, 4] float32: ``[x1, y1, x2, y2]`` in the original frame (0-based, inclusive
        pixel extents as in the VOC annotations), in the input's order, M <= N.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    small_h, small_w = search.bgr.shape[:2]
    fx = search.width / small_w
    fy = search.height / small_h
    mapped = np.stack(
        [
            boxes[:, 0] * fx,
            boxes[:, 1] * fy,
            (boxes[:, 2] + 1.0) * fx - 1.0,
            (boxes[:, 3] + 1.0) * fy - 1.0,
        ],
        axis=1,
    )
    np.clip(mapped[:, 0::2], 0.0, search.width - 1.0, out=mapped[:, 0::2])
    np.clip(mapped[:, 1::2], 0.0, search.height - 1.0, out=mapped[:, 1::2])
    mapped = np.round(mapped, 2).astype(np.float32)
    keep = (mapped[:, 2] - mapped[:, 0] >= config.min_size) & (
        mapped[:, 3] - mapped[:, 1] >= config.min_size
    )
    mapped = mapped[keep]
    if len(mapped) == 0:
        return np.zeros((0, 4), dtype=np.float32)
    _, first = np.unique(mapped, axis=0, return_index=True)
    return mapped[np.sort(first)]


def proposal_cap(config: ProposalConfig, max_proposals: int | None) -> int:
    """The cap of one call: ``max_proposals`` when given, else ``config.max_proposals``."""
    cap = config.max_proposals if max_proposals is None else max_proposals
    if cap < 0:
        raise ValueError(f"expected max_proposals >= 0, got {cap}")
    return cap


def cap_proposals(
    boxes: np.ndarray, config: ProposalConfig, max_proposals: int | None = None
) -> np.ndarray:
    """Step 5: the first :func:`proposal_cap` boxes of ``boxes`` (ndarray[N, 4]), a copy."""
    return np.array(boxes[: proposal_cap(config, max_proposals)], dtype=np.float32)


def search_boxes(
    image_rgb: np.ndarray, config: ProposalConfig, *, workers: int | Executor = 0
) -> np.ndarray:
    """Steps 1 to 4: every proposal of ``image_rgb`` in order, before the cap.

    Args:
        image_rgb (ndarray[H, W, 3] uint8): the image, RGB.
        config: proposal settings.
        workers: where the selective-search jobs run (see
            :func:`app.data.selective_search.selective_search_parallel`): 0 in this process,
            an executor (a shared process pool), or N for a pool made for this call.

    Returns:
        ndarray[N, 4] float32: boxes ``[x1, y1, x2, y2]`` in ``image_rgb``'s frame.
    """
    search = search_image(image_rgb, config)
    boxes = selective_search_parallel(
        search.bgr, workers=workers, max_proposals=None, channel_order="bgr"
    )
    return boxes_in_original_frame(search, boxes, config)


def propose(
    image_rgb: np.ndarray,
    config: ProposalConfig | None = None,
    max_proposals: int | None = None,
    *,
    workers: int | Executor = 0,
) -> np.ndarray:
    """Selective-search proposals for one image, reproducibly (module docstring).

    Args:
        image_rgb (ndarray[H, W, 3] uint8): the image, RGB.
        config: proposal settings; the defaults of :class:`ProposalConfig` when omitted.
        max_proposals: overrides ``config.max_proposals`` when given.
        workers: where the selective-search jobs run: 0 in this process (the default), an
            executor such as :func:`app.data.selective_search.create_pool`'s, or N >= 1 for a
            pool of N processes made for this call. The answer does not depend on it.

    Returns:
        ndarray[N, 4] float32: boxes ``(x1, y1, x2, y2)`` in ``image_rgb``'s pixel frame
        (0-based, inclusive pixel extents as in the VOC annotations), N <= the cap.
    """
    config = config or ProposalConfig()
    cap = proposal_cap(config, max_proposals)
    return cap_proposals(search_boxes(image_rgb, config, workers=workers), config, cap)
