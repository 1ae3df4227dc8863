"""What lies behind the shapes: photographs, procedural textures and clutter.

A background is a crop of a real photograph that ships inside an installed package
(scikit-image's and scikit-learn's sample images) or a procedural texture (smooth noise,
gradients, stripes), sometimes both blended. Clutter is drawn over it: things that are not one
of the classes (irregular polygons, lines, text, clearly elongated ellipses).

All randomness comes from the ``numpy.random.Generator`` passed in, in a fixed order of draws.
"""

from __future__ import annotations

import logging
import math
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from app.data.shapes.geometry import SUBPIXEL_SHIFT, to_fixed_point
from app.data.shapes.lookalikes import draw_lookalike

logger = logging.getLogger(__name__)

# Photographs bundled in scikit-image's wheel (no download) and scikit-learn's sample images.
# Images dominated by regular shapes (coins, chessboard, the retina disc, star fields) are left
# out so the background does not teach the wrong class.
_SKIMAGE_PHOTOS: tuple[str, ...] = (
    "astronaut.png",
    "coffee.png",
    "chelsea.png",
    "rocket.jpg",
    "camera.png",
    "brick.png",
    "grass.png",
    "gravel.png",
    "moon.png",
    "motorcycle_left.png",
    "ihc.png",
    "page.png",
    "text.png",
)
_SKLEARN_PHOTOS: tuple[str, ...] = ("china.jpg", "flower.jpg")

PHOTO_SPLITS: dict[str, tuple[str, ...]] = {
    "train": (
        "astronaut.png",
        "rocket.jpg",
        "camera.png",
        "grass.png",
        "moon.png",
        "motorcycle_left.png",
        "ihc.png",
        "text.png",
        "china.jpg",
    ),
    "val": ("chelsea.png", "brick.png"),
    "test": ("coffee.png", "gravel.png", "page.png", "flower.jpg"),
}
"""The fixed partition of the photographs used when the ``background_split`` knob is on: each
photograph belongs to exactly one split. Each held-out split gets a mix of scenes and
textures (val: a cat, bricks; test: a coffee cup, gravel, a printed page, a flower)."""

# Text clutter avoids glyphs that look like a class (o, 0, O, Q: circles; x, X, +: crosses).
_TEXT_ALPHABET = "ABCEFGHJKLMNPRSTUVWYZabcdefghjkmnprstuvwyz123456789-=#%&"
_FONTS: tuple[int, ...] = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_PLAIN,
    cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
)


def _photo_paths() -> list[Path]:
    paths: list[Path] = []
    try:
        import skimage.data

        root = Path(skimage.data.__file__).parent
        paths += [root / name for name in _SKIMAGE_PHOTOS]
    except ImportError:  # pragma: no cover - scikit-image is a dependency
        pass
    try:
        import sklearn.datasets

        root = Path(sklearn.datasets.__file__).parent / "images"
        paths += [root / name for name in _SKLEARN_PHOTOS]
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        pass
    return [p for p in paths if p.is_file()]


@lru_cache(maxsize=1)
def _photos() -> tuple[tuple[str, np.ndarray], ...]:
    """The background photographs as (file name, BGR uint8 array), loaded once per process."""
    from PIL import Image  # decodes these PNGs without libpng's iCCP warnings on stderr

    images = []
    for path in _photo_paths():
        with Image.open(path) as photo:
            rgb = np.asarray(photo.convert("RGB"))
        if min(rgb.shape[:2]) >= 64:
            images.append((path.name, np.ascontiguousarray(rgb[:, :, ::-1])))  # RGB -> BGR
    if not images:
        logger.warning("no background photographs found; using procedural backgrounds only")
    return tuple(images)


def _photos_for(split: str | None) -> tuple[tuple[str, np.ndarray], ...]:
    """The photographs a split may use: all of them for None, else its :data:`PHOTO_SPLITS`
    part (in the order of :func:`_photos`)."""
    if split is None:
        return _photos()
    if split not in PHOTO_SPLITS:
        raise ValueError(f"expected a split in {tuple(PHOTO_SPLITS)}, got {split!r}")
    return tuple(item for item in _photos() if item[0] in PHOTO_SPLITS[split])


def background_sources() -> list[str]:
    """Names of the photographs available as backgrounds (recorded in the dataset summary)."""
    return [p.name for p in _photo_paths()]


def random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    """A uniformly random BGR colour, each channel 0..255."""
    b, g, r = rng.integers(0, 256, size=3)
    return int(b), int(g), int(r)


def photo_split_names(split: str) -> list[str]:
    """The photographs available to ``split`` when the photographs are split between splits."""
    return [name for name, _ in _photos_for(split)]


def _photo_crop(
    rng: np.random.Generator, height: int, width: int, split: str | None
) -> tuple[np.ndarray, str] | None:
    """A random crop of a random photograph (of ``split``'s part when not None) resized to
    [height, width, 3], with the photograph's name; None without any photograph."""
    photos = _photos_for(split)
    if not photos:
        return None
    name, photo = photos[int(rng.integers(len(photos)))]
    ph, pw = photo.shape[:2]
    aspect = width / height
    crop_h = ph * rng.uniform(0.35, 1.0)
    crop_w = crop_h * aspect
    if crop_w > pw:
        crop_w = pw * rng.uniform(0.6, 1.0)
        crop_h = crop_w / aspect
    crop_h, crop_w = max(16, min(ph, round(crop_h))), max(16, min(pw, round(crop_w)))
    top = int(rng.integers(0, ph - crop_h + 1))
    left = int(rng.integers(0, pw - crop_w + 1))
    crop = photo[top : top + crop_h, left : left + crop_w]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    out = cv2.resize(np.ascontiguousarray(crop), (width, height), interpolation=cv2.INTER_LINEAR)
    gains = rng.uniform(0.75, 1.25, size=3).astype(np.float32)
    return np.clip(out.astype(np.float32) * gains, 0, 255).astype(np.uint8), name


def _procedural(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A [height, width, 3] uint8 texture: smooth noise, gradient, stripes or flat, plus noise."""
    kind = int(rng.integers(4))
    c1 = np.asarray(random_colour(rng), np.float32)
    c2 = np.asarray(random_colour(rng), np.float32)
    if kind == 0:  # smooth colour noise
        cells = int(rng.integers(3, 24))
        small = rng.uniform(0, 255, size=(cells, cells, 3)).astype(np.float32)
        out = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    elif kind in (1, 2):  # linear gradient (1) or stripes (2) along a random direction
        theta = rng.uniform(0, math.pi)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        t = xs * math.cos(theta) + ys * math.sin(theta)
        if kind == 1:
            t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
        else:
            period = rng.uniform(8, 80)
            t = 0.5 + 0.5 * np.sin(t * (2 * math.pi / period))
            if rng.random() < 0.5:
                t = (t > 0.5).astype(np.float32)
        out = c1 * (1 - t[..., None]) + c2 * t[..., None]
    else:  # flat colour
        out = np.broadcast_to(c1, (height, width, 3)).copy()
    sigma = rng.uniform(0, 20)
    out = out + rng.standard_normal((height, width, 3), dtype=np.float32) * sigma
    return np.clip(out, 0, 255).astype(np.uint8)


def background_with_source(
    rng: np.random.Generator, height: int, width: int, photo_split: str | None = None
) -> tuple[np.ndarray, str | None]:
    """A new background image and the photograph it shows.

    About 55% are a photograph, 15% a photograph blended with a texture, 30% a texture.

    Args:
        rng: the only source of randomness (a fixed order of draws).
        height, width: image size in pixels.
        photo_split: None to draw from every photograph, or a split name to draw only from
            its part of :data:`PHOTO_SPLITS` (the same draws either way).

    Returns:
        (np.ndarray[height, width, 3] uint8 BGR, the photograph's file name or None for a
        purely procedural background).
    """
    choice = rng.random()
    crop = _photo_crop(rng, height, width, photo_split) if choice < 0.7 else None
    if crop is None:
        return _procedural(rng, height, width), None
    photo, name = crop
    if choice < 0.55:
        return photo, name
    texture = _procedural(rng, height, width)
    w = rng.uniform(0.25, 0.6)
    return cv2.addWeighted(photo, 1.0 - w, texture, w, 0.0), name


def random_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A new background image, np.ndarray[height, width, 3] uint8 BGR, drawn from every
    photograph (see :func:`background_with_source`)."""
    return background_with_source(rng, height, width)[0]


def _irregular_polygon(rng: np.random.Generator, center: np.ndarray, size: float) -> np.ndarray:
    """A polygon that is clearly not regular: its longest side is >= 1.6 x its shortest."""
    for _ in range(20):
        n = int(rng.integers(3, 9))
        t = np.sort(rng.uniform(0, 2 * math.pi, n))
        r = size * rng.uniform(0.3, 1.0, n)
        pts = center + np.stack([r * np.cos(t), r * np.sin(t)], axis=1)
        sides = np.linalg.norm(pts - np.roll(pts, 1, axis=0), axis=1)
        if sides.max() >= 1.6 * max(sides.min(), 1e-6):
            return pts
    return pts


def draw_clutter(rng: np.random.Generator, image: np.ndarray, lookalikes: float = 0.0) -> list[str]:
    """Paint 0 to 8 distractors (not any class) over ``image`` (np.ndarray[H, W, 3] uint8)
    in place.

    Args:
        rng: the only source of randomness.
        image: painted in place.
        lookalikes: probability that an item is a look-alike
            (:func:`~app.data.shapes.lookalikes.draw_lookalike`); at 0 nothing is drawn for it,
            so the draws are those of the generator without look-alikes.

    Returns:
        The kind of each item in paint order: ``polygon``, ``lines``, ``text``, ``ellipse``,
        or ``lookalike:<kind>``.
    """
    kinds = []
    for _ in range(int(rng.integers(0, 9))):
        if lookalikes > 0.0 and rng.random() < lookalikes:
            colour = random_colour(rng)
            outline = random_colour(rng) if rng.random() < 0.4 else None
            kinds.append("lookalike:" + draw_lookalike(rng, image, colour, outline))
        else:
            kinds.append(_draw_distractor(rng, image))
    return kinds


def _draw_distractor(rng: np.random.Generator, image: np.ndarray) -> str:
    """Paint one irregular polygon, polyline, text or elongated ellipse; return which."""
    height, width = image.shape[:2]
    kind = int(rng.integers(4))
    colour = random_colour(rng)
    center = rng.uniform((0, 0), (width, height))
    size = float(np.exp(rng.uniform(math.log(10), math.log(0.4 * min(height, width)))))
    thickness = int(rng.integers(1, 5))
    if kind == 0:
        pts_i = [to_fixed_point(_irregular_polygon(rng, center, size))]
        if rng.random() < 0.6:
            cv2.fillPoly(image, pts_i, colour, cv2.LINE_AA, SUBPIXEL_SHIFT)
        else:
            cv2.polylines(image, pts_i, True, colour, thickness, cv2.LINE_AA, SUBPIXEL_SHIFT)
    elif kind == 1:
        n = int(rng.integers(2, 5))
        pts_i = [to_fixed_point(center + rng.uniform(-size, size, size=(n, 2)))]
        cv2.polylines(image, pts_i, False, colour, thickness, cv2.LINE_AA, SUBPIXEL_SHIFT)
    elif kind == 2:
        n_chars = int(rng.integers(2, 10))
        text = "".join(rng.choice(list(_TEXT_ALPHABET), size=n_chars))
        font = _FONTS[int(rng.integers(len(_FONTS)))]
        scale = float(rng.uniform(0.4, 1.8))
        origin = (int(center[0]) - int(size), int(center[1]))
        cv2.putText(image, text, origin, font, scale, colour, max(1, thickness - 1), cv2.LINE_AA)
    else:
        axes = (max(2, round(size)), max(1, round(size / rng.uniform(2.5, 6.0))))
        angle = float(rng.uniform(0, 180))
        c = (round(center[0]), round(center[1]))
        fill = -1 if rng.random() < 0.6 else thickness
        cv2.ellipse(image, c, axes, angle, 0, 360, colour, fill, cv2.LINE_AA)
    return ("polygon", "lines", "text", "ellipse")[kind]
