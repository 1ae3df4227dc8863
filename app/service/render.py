"""Drawing detections onto the image for the ``image/png`` / ``image/jpeg`` answers of /detect."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from app.inference.detector import Detection

#: Distinct, readable colours; class ``k`` uses ``PALETTE[k % len(PALETTE)]``.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (128, 0, 0), (170, 255, 195),
    (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128), (255, 255, 255),
)  # fmt: skip
MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg"}


def draw_detections(image: np.ndarray, detections: Sequence[Detection], image_format: str) -> bytes:
    """Encode ``image`` with each detection's box and ``label confidence`` drawn.

    Args:
        image (ndarray[H, W, 3] uint8): RGB pixels, the frame the boxes are in.
        detections: boxes in pixels, ``(x1, y1, x2, y2)``.
        image_format: ``png`` or ``jpeg``.

    Returns:
        The encoded file.
    """
    if image_format not in MEDIA_TYPES:
        raise ValueError(f"expected image_format png or jpeg, got {image_format!r}")
    canvas = Image.fromarray(np.ascontiguousarray(image))
    draw = ImageDraw.Draw(canvas)
    height, width = image.shape[:2]
    line = max(2, round(min(width, height) / 200))
    font = ImageFont.load_default(size=max(12, round(min(width, height) / 40)))
    for detection in detections:
        colour = PALETTE[detection.class_id % len(PALETTE)]
        x1, y1, x2, y2 = detection.box
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=line)
        text = f"{detection.label} {detection.confidence:.2f}"
        left, top, right, bottom = draw.textbbox((x1, y1), text, font=font)
        text_h = bottom - top
        y_text = y1 - text_h - 2 * line if y1 - text_h - 2 * line >= 0 else y1 + line
        draw.rectangle((x1, y_text, x1 + (right - left) + 2 * line, y_text + text_h + line),
                       fill=colour)  # fmt: skip
        draw.text((x1 + line, y_text), text, fill=(0, 0, 0), font=font, anchor="lt")
    out = io.BytesIO()
    if image_format == "jpeg":
        canvas.save(out, format="JPEG", quality=90)
    else:
        canvas.save(out, format="PNG")
    return out.getvalue()


def choose_format(explicit: str | None, accept: str | None) -> str:
    """``json``, ``png`` or ``jpeg``: the ``format`` parameter if given, else from ``Accept``.

    ``Accept`` entries are ranked by their ``q`` value (ties keep header order); the first
    of ``application/json``, ``image/png``, ``image/jpeg`` wins, and anything else (``*/*``,
    ``image/*``, no header) means JSON.
    """
    if explicit is not None:
        return explicit
    if not accept:
        return "json"
    ranked: list[tuple[float, int, str]] = []
    for position, entry in enumerate(accept.split(",")):
        media, *params = (part.strip() for part in entry.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            ranked.append((-quality, position, media.lower()))
    for _, _, media in sorted(ranked):
        if media == "application/json":
            return "json"
        for image_format, media_type in MEDIA_TYPES.items():
            if media == media_type:
                return image_format
    return "json"
