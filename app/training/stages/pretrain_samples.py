"""Pre-training's samples: which objects and background windows of an image are cropped.

Every object not marked difficult is a sample; an image holding one object adds *scene views*
(the object at its share of the image, as whole-image classification sees it); with
``pretrain.background_per_image`` each image adds windows that hold no object, labelled with an
extra class K (``background_source``: random squares or the image's proposals).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from tqdm import tqdm

from app.data.voc import VocDataset
from app.ops.boxes import longer_side_share
from app.training.recipe import PretrainConfig


@dataclass(frozen=True)
class LabelledObject:
    """One training object: which image, its box ``(x1, y1, x2, y2)`` and class index.

    ``context`` fixes the object's share of the crop for this sample instead of drawing it
    from the epoch's range: a *scene view* of an image that holds only this object uses its
    share of the image's shorter side, so the crop looks like the whole image does to
    ``classify`` (objects as small as 7 % of the image, which object crops never show).
    """

    image_index: int
    box: tuple[float, float, float, float]
    class_id: int
    context: float | None = None


#: A background window overlaps every object with IoU below this ...
BACKGROUND_MAX_IOU = 0.3
#: ... and covers less than this share of any object's area (so no whole object hides inside).
BACKGROUND_MAX_COVER = 0.5
#: Smallest side of a background window, pixels (the smallest generated objects are ~24 px).
BACKGROUND_MIN_SIDE = 24.0


def holds_no_object(windows: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """``bool[M]``: which of ``windows`` ``[M, 4]`` overlap each of ``boxes`` ``[N, 4]`` with
    IoU below :data:`BACKGROUND_MAX_IOU` and cover less than :data:`BACKGROUND_MAX_COVER` of
    its area. By hand, not torchvision's box_iou: the cover test needs the intersection."""
    w = np.asarray(windows, dtype=np.float64).reshape(-1, 1, 4)
    b = np.asarray(boxes, dtype=np.float64).reshape(1, -1, 4)
    areas = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    own = (w[..., 2] - w[..., 0]) * (w[..., 3] - w[..., 1])
    iw = np.clip(np.minimum(w[..., 2], b[..., 2]) - np.maximum(w[..., 0], b[..., 0]), 0.0, None)
    ih = np.clip(np.minimum(w[..., 3], b[..., 3]) - np.maximum(w[..., 1], b[..., 1]), 0.0, None)
    inter = iw * ih
    iou = inter / (own + areas - inter)
    fine = (iou < BACKGROUND_MAX_IOU) & (inter < BACKGROUND_MAX_COVER * np.maximum(areas, 1e-9))
    return np.asarray(fine.all(axis=1))


def background_windows(
    rng: np.random.Generator,
    image_size: tuple[int, int],
    boxes: np.ndarray,
    count: int,
    candidates: np.ndarray | None = None,
) -> list[tuple[float, float, float, float]]:
    """Up to ``count`` windows ``(x1, y1, x2, y2)`` inside an image of ``image_size``
    ``(height, width)`` that hold no object of ``boxes`` ``[N, 4]`` (:func:`holds_no_object`).

    Without ``candidates``: squares with sides log-uniform from :data:`BACKGROUND_MIN_SIDE` to
    the shorter image side; a window that fails is redrawn (20 tries per window), so a crowded
    image may yield fewer. With ``candidates`` ``[M, 4]`` (the image's proposals): drawn
    without replacement from those that pass and whose longer side is at least
    :data:`BACKGROUND_MIN_SIDE`.
    """
    height, width = image_size
    if candidates is not None:
        c = np.asarray(candidates, dtype=np.float64).reshape(-1, 4)
        longer = np.maximum(c[:, 2] - c[:, 0], c[:, 3] - c[:, 1])
        pool = c[(longer >= BACKGROUND_MIN_SIDE) & holds_no_object(c, boxes)]
        picked = rng.choice(len(pool), min(count, len(pool)), replace=False)
        return [(float(x1), float(y1), float(x2), float(y2)) for x1, y1, x2, y2 in pool[picked]]
    top = float(min(height, width))
    if top < BACKGROUND_MIN_SIDE:
        return []
    windows: list[tuple[float, float, float, float]] = []
    for _ in range(count * 20):
        if len(windows) == count:
            break
        side = math.exp(rng.uniform(math.log(BACKGROUND_MIN_SIDE), math.log(top)))
        x1, y1 = rng.uniform(0.0, width - side), rng.uniform(0.0, height - side)
        if holds_no_object(np.array([x1, y1, x1 + side, y1 + side]), boxes)[0]:
            windows.append((x1, y1, x1 + side, y1 + side))
    return windows


def samples_of_image(
    image_index: int,
    image_size: tuple[int, int],
    boxes: np.ndarray,
    class_ids: Sequence[int],
    difficult: np.ndarray,
    scene_views: int,
    background: int = 0,
    background_class: int = -1,
    rng: np.random.Generator | None = None,
    candidates: np.ndarray | None = None,
) -> list[LabelledObject]:
    """The pre-training samples of one image of ``image_size`` ``(height, width)``: a crop of every
    object not marked difficult, plus ``scene_views`` scene views when it is the image's only
    object (its longer side's share of the image's shorter side fixes the context), plus
    ``background`` windows of :func:`background_windows` (drawn with ``rng``, from
    ``candidates`` when given) labelled
    ``background_class`` and cropped exactly (context 1)."""
    samples = []
    if background > 0:
        if rng is None or background_class < 0:
            raise ValueError("background windows need an rng and a background_class >= 0")
        samples += [
            LabelledObject(image_index, window, background_class, context=1.0)
            for window in background_windows(rng, image_size, boxes, background, candidates)
        ]
    for box, class_id, hard in zip(boxes, class_ids, difficult, strict=True):
        if hard:
            continue
        x1, y1, x2, y2 = (float(v) for v in box)
        sample = LabelledObject(image_index, (x1, y1, x2, y2), class_id)
        samples.append(sample)
        if len(boxes) == 1:
            share = min(0.95, longer_side_share(sample.box, *image_size))
            samples += [replace(sample, context=share)] * scene_views
    return samples


def dataset_samples(
    dataset: VocDataset,
    classes: list[str],
    config: PretrainConfig,
    rng: np.random.Generator,
    candidates: dict[str, np.ndarray] | None,
    *,
    first_index: int,
    progress: bool,
) -> tuple[list[np.ndarray], list[LabelledObject]]:
    """Load every image of ``dataset`` and its :func:`samples_of_image`.

    Args:
        classes: class names; a sample's ``class_id`` is the index of its label here, and
            background windows get ``len(classes)``.
        rng: draws the background windows (shared across datasets, in image order).
        candidates: proposals ``[M, 4]`` by image id to draw background windows from, or
            None for random squares.
        first_index: ``image_index`` of the first image (the images already loaded).

    Returns:
        ``(images, samples)``: RGB uint8 ``[H, W, 3]`` images in ``dataset.ids`` order.
    """
    images: list[np.ndarray] = []
    samples: list[LabelledObject] = []
    for image_id in tqdm(dataset.ids, desc="load images", disable=not progress):
        ann = dataset.annotation(image_id)
        image = dataset.load_rgb(image_id)
        samples += samples_of_image(
            first_index + len(images),
            image.shape[:2],
            ann.boxes,
            [classes.index(label) for label in ann.labels],
            ann.difficult,
            config.scene_views,
            background=config.background_per_image,
            background_class=len(classes),
            rng=rng,
            candidates=None if candidates is None else candidates[image_id],
        )
        images.append(image)
    return images, samples
