"""Proposals supplied by the caller instead of selective search (the ``proposals`` form field of
``POST /detect``, ``spp detect --proposals FILE.json``).

The format is a JSON array of ``[x1, y1, x2, y2]`` boxes in the image's pixel frame (after its
EXIF orientation), 0-based, the API's box convention, e.g. ``[[10, 20, 110, 90], [0, 0, 5.5,
7]]``. Two steps, so that malformed text is refused before the image is decoded:

- :func:`parse_client_proposals`: the text -> ndarray[N, 4]; not JSON, not a list of lists of 4
  finite numbers, or more than ``max_count`` boxes is a :class:`ClientProposalsError`;
- :func:`clip_client_proposals`: x clipped to ``[0, W - 1]``, y to ``[0, H - 1]`` (as the
  detector clips its boxes); a box with ``x2 <= x1`` or ``y2 <= y1`` after clipping is an error.

An empty array is valid: zero windows, zero detections.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


class ClientProposalsError(ValueError):
    """Supplied proposals that cannot be used; the message says what was expected."""


def _describe(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, allow_nan=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _finite_number(value: Any) -> bool:
    """A JSON number (not a boolean) that is finite as a float."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond the float range
        return False


def parse_client_proposals(text: str | bytes, max_count: int) -> np.ndarray:
    """Parse supplied proposals.

    Args:
        text: a JSON array of ``[x1, y1, x2, y2]`` arrays of numbers.
        max_count: the most boxes allowed.

    Returns:
        ndarray[N, 4] float64: the boxes as given (not yet clipped), N <= ``max_count``.

    Raises:
        ClientProposalsError: not JSON, not such an array, a number that is not finite, or more
            than ``max_count`` boxes.
    """
    try:
        value = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ClientProposalsError(f"proposals: not valid JSON ({exc})") from None
    if not isinstance(value, list):
        raise ClientProposalsError(
            f"proposals: expected a JSON array of [x1, y1, x2, y2] boxes, got {_describe(value)}"
        )
    if len(value) > max_count:
        raise ClientProposalsError(
            f"proposals: at most {max_count} boxes allowed (max_proposals), got {len(value)}"
        )
    for index, box in enumerate(value):
        if not (isinstance(box, list) and len(box) == 4 and all(_finite_number(v) for v in box)):
            raise ClientProposalsError(
                f"proposals[{index}]: expected [x1, y1, x2, y2], 4 finite numbers, "
                f"got {_describe(box)}"
            )
    return np.array(value, dtype=np.float64).reshape(-1, 4)


def clip_client_proposals(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Clip supplied boxes to the image and refuse the empty ones.

    Args:
        boxes (ndarray[N, 4]): ``[x1, y1, x2, y2]`` from :func:`parse_client_proposals`.
        width, height: the image's size (px).

    Returns:
        ndarray[N, 4] float32: x in ``[0, W - 1]``, y in ``[0, H - 1]``, every box with
        ``x2 > x1`` and ``y2 > y1``.

    Raises:
        ClientProposalsError: a box is empty after clipping (the first one is named).
    """
    clipped = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    np.clip(clipped[:, 0::2], 0.0, width - 1.0, out=clipped[:, 0::2])
    np.clip(clipped[:, 1::2], 0.0, height - 1.0, out=clipped[:, 1::2])
    clipped32 = clipped.astype(np.float32)
    empty = (clipped32[:, 2] <= clipped32[:, 0]) | (clipped32[:, 3] <= clipped32[:, 1])
    if empty.any():
        row = int(np.flatnonzero(empty)[0])
        given = ", ".join(f"{v:g}" for v in np.asarray(boxes)[row])
        raise ClientProposalsError(
            f"proposals[{row}]: [{given}] is empty after clipping to the {width}x{height} image "
            "(expected x2 > x1 and y2 > y1)"
        )
    return clipped32
