"""The one drawing function: detections onto an RGB image (``spp detect --draw`` and the
service's ``image/png`` / ``image/jpeg`` answers of /detect)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from app.inference.results import Detection

#: A fixed, colour-blind-friendly palette (Okabe-Ito), RGB; class ``k`` uses
#: ``PALETTE[k % len(PALETTE)]``.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 159, 0),
    (86, 180, 233),
    (0, 158, 115),
    (240, 228, 66),
    (0, 114, 178),
    (213, 94, 0),
    (204, 121, 167),
    (0, 0, 0),
)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_TEXT_COLOUR = (255, 255, 255)


def line_thickness(height: int, width: int) -> int:
    """Box outline width in pixels: 1 up to 600 px on the longer side, then 1 per 400 px."""
    return max(1, round(max(height, width) / 400))


def draw_detections(image: np.ndarray, detections: Sequence[Detection]) -> np.ndarray:
    """A copy of ``image`` with each detection's box and ``label confidence`` drawn.

    Args:
        image (ndarray[H, W, 3] uint8): RGB pixels, the frame the boxes are in.
        detections: boxes ``(x1, y1, x2, y2)`` in pixels, rounded to the nearest pixel.

    Returns:
        ndarray[H, W, 3] uint8. The outline (``line_thickness`` px, centred on the box edge) is
        in the class's palette colour; the label sits on a filled bar above the box (inside it
        at the top of the image). The most confident detection is drawn last, on top.
        ``image`` itself is not modified.
    """
    canvas = np.ascontiguousarray(image.copy())
    thickness = line_thickness(*canvas.shape[:2])
    for det in sorted(detections, key=lambda d: d.confidence):
        colour = PALETTE[det.class_id % len(PALETTE)]
        x1, y1, x2, y2 = (round(v) for v in det.box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness, cv2.LINE_8)
        text = f"{det.label} {det.confidence:.2f}"
        scale = 0.4 * thickness + 0.1
        (tw, th), base = cv2.getTextSize(text, _FONT, scale, 1)
        ty = y1 - 2 if y1 - th - base - 2 >= 0 else y1 + th + 2
        cv2.rectangle(canvas, (x1, ty - th - 2), (x1 + tw + 2, ty + base - 1), colour, -1)
        cv2.putText(canvas, text, (x1 + 1, ty - 1), _FONT, scale, _TEXT_COLOUR, 1, cv2.LINE_AA)
    return canvas
