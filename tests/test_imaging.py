"""``app.imaging.decode_image`` on the generated corpus of bad and awkward images."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from PIL import Image

from app.imaging import ImageError, decode_image

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
