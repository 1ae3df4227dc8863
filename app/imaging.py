"""Uploaded bytes -> an RGB ``uint8`` array, with limits checked before any pixel is decoded.

Decoding happens in memory only (uploads never touch the disk) and in this order, each step
failing with an :class:`ImageError` that carries the HTTP status and a short, stable message:

- empty body -> 400 ``empty body: expected an image``;
- not an image, or a format not allowed -> 415 ``unsupported image format: ...``;
- declared ``width * height`` above ``max_pixels`` -> 413
  ``image too large: WxH pixels exceeds the limit of N``;
- a side below ``min_side`` -> 422 ``image too small: WxH pixels, ...``;
- longer side above ``max_aspect_ratio`` times the shorter -> 422
  ``image aspect ratio too extreme: WxH pixels, ...``;
- truncated or corrupt pixel data -> 400 ``corrupt or truncated image data``;
- a pixel mode that cannot become RGB -> 415 ``unsupported image mode: ...``.

The pixel count is read from the header (``Image.open`` is lazy), so a decompression bomb (a
few KB of PNG declaring 30000 x 30000 pixels) is refused without allocating its pixels.
Pillow's own bomb guard (``Image.MAX_IMAGE_PIXELS``, a process-wide setting we leave alone)
only ever triggers above our limit and is mapped to the same 413.

Accepted formats: JPEG (camera MPO files open as JPEG), PNG, GIF, WebP, TIFF, BMP.
Animated or multi-page images give their first frame. The EXIF orientation is applied,
so the array (and every box computed on it) is in the frame the image is displayed in.
Any pixel mode becomes RGB: transparency is composited over white, 16-bit samples are
scaled to 8 bits (``v / 257``), CMYK goes through Pillow's conversion.

The minimum side (16 px, one conv5 cell at the original resolution) and the maximum aspect
ratio (32:1) keep every image meaningful for selective search and the network after resizing
(at the 2000 px cap on the longer side, the shorter side still has >= 62 px).

The way back, an array -> PNG or JPEG bytes (the service's drawn answers), is
:func:`encode_image`.
"""

from __future__ import annotations

import io
import logging

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

logger = logging.getLogger(__name__)

#: Formats Pillow may identify an upload as; everything else (EPS, PSD, ICO, ...) is refused.
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP")
#: Smallest accepted side in pixels.
MIN_SIDE = 16
#: Largest accepted ratio of the longer side to the shorter one.
MAX_ASPECT_RATIO = 32.0
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})


class ImageError(Exception):
    """An upload that cannot be used as an image; ``status_code`` is the HTTP answer."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def decode_image(
    data: bytes,
    *,
    max_pixels: int,
    min_side: int = MIN_SIDE,
    max_aspect_ratio: float = MAX_ASPECT_RATIO,
) -> np.ndarray:
    """Decode an uploaded image.

    Args:
        data: the encoded file, in memory.
        max_pixels: largest accepted ``width * height``, checked on the header before decoding.
        min_side: smallest accepted width and height (after nothing is resized).
        max_aspect_ratio: largest accepted ``max(w, h) / min(w, h)``.

    Returns:
        ndarray[H, W, 3] uint8: RGB pixels, C-contiguous, in the displayed orientation.

    Raises:
        ImageError: with the HTTP status and message of the table in the module docstring.
    """
    if not data:
        raise ImageError(400, "empty body: expected an image")
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError:
        raise ImageError(
            413, f"image too large: exceeds the limit of {max_pixels} pixels"
        ) from None
    except UnidentifiedImageError:
        raise ImageError(
            415, "unsupported image format: expected JPEG, PNG, GIF, WebP, TIFF or BMP"
        ) from None
    except Exception as exc:  # a plugin choking on a malformed header
        logger.debug("image header rejected: %r", exc)
        raise ImageError(400, "corrupt or truncated image data") from None
    with image:
        width, height = image.size
        _check_size(width, height, max_pixels, min_side, max_aspect_ratio)
        try:
            image.seek(0)  # first frame of an animation or the first page of a TIFF
            image.load()
        except Image.DecompressionBombError:
            raise ImageError(
                413, f"image too large: exceeds the limit of {max_pixels} pixels"
            ) from None
        except Exception as exc:
            logger.debug("image data rejected: %r", exc)
            raise ImageError(400, "corrupt or truncated image data") from None
        oriented = _apply_exif_orientation(image)
        return _to_rgb_array(oriented)


def _check_size(
    width: int, height: int, max_pixels: int, min_side: int, max_aspect_ratio: float
) -> None:
    """Validate the declared size; raises :class:`ImageError` (413 or 422)."""
    if width * height > max_pixels:
        raise ImageError(
            413, f"image too large: {width}x{height} pixels exceeds the limit of {max_pixels}"
        )
    if min(width, height) < min_side:
        raise ImageError(
            422, f"image too small: {width}x{height} pixels, each side must be at least {min_side}"
        )
    if max(width, height) > max_aspect_ratio * min(width, height):
        raise ImageError(
            422,
            f"image aspect ratio too extreme: {width}x{height} pixels, the longer side may be at "
            f"most {max_aspect_ratio:g} times the shorter",
        )


def _apply_exif_orientation(image: Image.Image) -> Image.Image:
    """The image as displayed: rotated / mirrored by its EXIF orientation tag, if any.

    A malformed EXIF block is ignored (the pixels are still good), with a log line.
    """
    try:
        return ImageOps.exif_transpose(image)
    except Exception as exc:
        logger.info("ignoring unreadable EXIF orientation: %r", exc)
        return image


def _to_rgb_array(image: Image.Image) -> np.ndarray:
    """Any Pillow mode -> ndarray[H, W, 3] uint8 RGB."""
    mode = image.mode
    try:
        if mode in _SIXTEEN_BIT_MODES:
            samples = np.asarray(image, dtype=np.float64)
            gray = np.clip(np.round(samples / 257.0), 0, 255).astype(np.uint8)  # 65535 -> 255
            return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
        if mode == "F":
            samples = np.asarray(image, dtype=np.float64)
            if samples.size and np.nanmax(samples) <= 1.0:
                samples = samples * 255.0
            gray = np.clip(np.nan_to_num(np.round(samples)), 0, 255).astype(np.uint8)
            return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
        if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
            mode == "P" and "transparency" in image.info
        ):
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, rgba)
        rgb = image if image.mode == "RGB" else image.convert("RGB")
    except (ValueError, OSError) as exc:
        logger.debug("mode conversion failed: %r", exc)
        raise ImageError(415, f"unsupported image mode: {mode}") from None
    return np.array(rgb, dtype=np.uint8, copy=True)


#: Formats :func:`encode_image` writes, with their media types.
MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg"}


def encode_image(image: np.ndarray, image_format: str) -> bytes:
    """Encode RGB pixels (``ndarray[H, W, 3] uint8``) as a ``png`` or ``jpeg`` (quality 90) file.

    Raises:
        ValueError: another ``image_format``.
    """
    if image_format not in MEDIA_TYPES:
        raise ValueError(f"expected image_format png or jpeg, got {image_format!r}")
    out = io.BytesIO()
    picture = Image.fromarray(np.ascontiguousarray(image))
    if image_format == "jpeg":
        picture.save(out, format="JPEG", quality=90)
    else:
        picture.save(out, format="PNG")
    return out.getvalue()
