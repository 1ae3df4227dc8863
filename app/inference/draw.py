"""Drawing detections onto an image (the CLI's ``--draw`` and the service's image responses)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from app.inference.detector import Detection

# A fixed, colour-blind-friendly palette (Okabe-Ito), RGB, cycled by class id.
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


def draw_detections(image_rgb: np.ndarray, detections: Sequence[Detection]) -> np.ndarray:
    """A copy of ``image_rgb`` (``[H, W, 3]`` uint8) with each box, label and confidence drawn."""
    canvas = np.ascontiguousarray(image_rgb.copy())
    thickness = max(1, round(max(canvas.shape[:2]) / 400))
    for det in sorted(detections, key=lambda d: d.confidence):
        colour = PALETTE[det.class_id % len(PALETTE)]
        x1, y1, x2, y2 = (round(v) for v in det.box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness, cv2.LINE_AA)
        text = f"{det.label} {det.confidence:.2f}"
        scale = 0.4 * thickness + 0.1
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        ty = y1 - 2 if y1 - th - base - 2 >= 0 else y1 + th + 2
        cv2.rectangle(canvas, (x1, ty - th - 2), (x1 + tw + 2, ty + base - 1), colour, -1)
        cv2.putText(
            canvas,
            text,
            (x1 + 1, ty - 1),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
    return canvas
