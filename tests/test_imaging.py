"""``app.imaging.decode_image`` on the generated corpus of bad and awkward images, and
``encode_image`` back."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image

from app.imaging import MEDIA_TYPES, ImageError, decode_image, encode_image

MAX_PIXELS = 40_000_000


def test_corpus_case(image_case: Any) -> None:
    if image_case.status != 200:
        with pytest.raises(ImageError) as caught:
            decode_image(image_case.data, max_pixels=MAX_PIXELS)
        assert (caught.value.status_code, caught.value.message) == (
            image_case.status,
            image_case.message,
        )
        return
    image = decode_image(image_case.data, max_pixels=MAX_PIXELS)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.flags.c_contiguous and image.flags.writeable
    assert (image.shape[1], image.shape[0]) == image_case.size
    if image_case.check is not None:
        image_case.check(image)


def test_pixel_limit_is_checked_on_the_header(images: Any) -> None:
    data = images.encode(images.scene(100, 80), "PNG")
    with pytest.raises(ImageError) as caught:
        decode_image(data, max_pixels=7999)
    assert caught.value.status_code == 413
    assert caught.value.message == "image too large: 100x80 pixels exceeds the limit of 7999"
    assert decode_image(data, max_pixels=8000).shape == (80, 100, 3)


def test_bomb_is_refused_without_decoding(images: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The 30000x30000 PNG (about 110 KB) is refused before ``load`` is ever called."""

    def no_load(self: Image.Image) -> None:
        raise AssertionError("pixels must not be decoded")

    data = images.bomb_png()
    assert len(data) < 200_000
    monkeypatch.setattr(Image.Image, "load", no_load)
    with pytest.raises(ImageError) as caught:
        decode_image(data, max_pixels=MAX_PIXELS)
    assert caught.value.status_code == 413


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_bomb_below_pillows_guard_names_its_size(images: Any) -> None:
    data = images.bomb_png(10000, 10000)  # 100 Mpixels: under Pillow's 179 Mpixel error
    with pytest.raises(ImageError) as caught:
        decode_image(data, max_pixels=MAX_PIXELS)
    assert caught.value.status_code == 413
    expected = "image too large: 10000x10000 pixels exceeds the limit of 40000000"
    assert caught.value.message == expected


def test_pillow_bomb_guard_maps_to_413(images: Any) -> None:
    """Above Pillow's own guard (2 x MAX_IMAGE_PIXELS) ``Image.open`` raises; still a 413."""
    data = images.bomb_png(20000, 20000)  # 400 Mpixels > Pillow's 179 Mpixel threshold
    with pytest.raises(ImageError) as caught:
        decode_image(data, max_pixels=10**12)
    assert caught.value.status_code == 413


def test_minimum_side_is_inclusive(images: Any) -> None:
    image = decode_image(images.encode(images.scene(16, 16), "PNG"), max_pixels=MAX_PIXELS)
    assert image.shape == (16, 16, 3)


def test_exif_orientation_gives_the_displayed_frame(images: Any) -> None:
    image = decode_image(images.exif_rotated_jpeg(), max_pixels=MAX_PIXELS)
    assert image.shape == (64, 48, 3)
    found = images.bright_box(image)
    assert all(abs(a - b) <= 2 for a, b in zip(found, images.exif_square_displayed, strict=True))


def test_encode_png_round_trips_exactly() -> None:
    image = np.random.default_rng(0).integers(0, 256, (17, 23, 3), dtype=np.uint8)
    data = encode_image(image, "png")
    assert Image.open(io.BytesIO(data)).format == "PNG"
    np.testing.assert_array_equal(decode_image(data, max_pixels=MAX_PIXELS), image)


def test_encode_jpeg_is_close() -> None:
    image = np.zeros((32, 48, 3), np.uint8)
    image[:, 24:] = (200, 40, 90)  # two flat halves: little to lose at quality 90
    data = encode_image(image, "jpeg")
    assert Image.open(io.BytesIO(data)).format == "JPEG"
    decoded = decode_image(data, max_pixels=MAX_PIXELS).astype(int)
    assert decoded.shape == image.shape
    assert np.abs(decoded[:, :20] - image[:, :20]).max() <= 8
    assert np.abs(decoded[:, 28:] - image[:, 28:]).max() <= 8
    assert set(MEDIA_TYPES) == {"png", "jpeg"}
    with pytest.raises(ValueError, match="expected image_format png or jpeg, got 'gif'"):
        encode_image(image, "gif")
