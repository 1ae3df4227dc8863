"""Read and write a detection dataset in Pascal VOC layout (real VOC 2007, the generated shapes).

Layout: ``JPEGImages/<id>.jpg``, ``Annotations/<id>.xml``, ``ImageSets/Main/<split>.txt`` (one
image id per line) and, optionally, ``classes.txt`` (one class name per line, in class-id order;
without it the 20 VOC classes are assumed). Accepted roots: a directory that directly holds
``JPEGImages/``, ``Annotations/`` and ``ImageSets/Main/``; or one holding ``VOC2007/`` or
``VOCdevkit/VOC2007/``.

Box convention: VOC XML stores 1-based inclusive pixel coordinates; :class:`VocAnnotation`
holds the project's 0-based float convention, ``x - 1`` for every coordinate, so a box whose
XML says ``xmin=1, xmax=10`` covers pixel columns 0..9 and reads back as ``x1=0, x2=9``;
the writer adds the 1 back.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip
"""The 20 Pascal VOC classes, in the devkit's order."""

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")


class VocFormatError(ValueError):
    """A dataset file is missing or malformed; the message names the file."""


@dataclass(frozen=True, eq=False)
class VocAnnotation:
    """The ground truth of one image.

    Attributes:
        image_id: the id (file stem).
        width, height: image size in pixels, from the XML ``<size>``.
        boxes: np.ndarray[N, 4] float32 ``(x1, y1, x2, y2)``, 0-based pixels (XML value - 1).
        labels: N class names.
        difficult: np.ndarray[N] bool.
        truncated: np.ndarray[N] bool.
    """

    image_id: str
    width: int
    height: int
    boxes: np.ndarray
    labels: list[str]
    difficult: np.ndarray
    truncated: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def resolve_voc_root(root: Path) -> Path:
    """The directory holding ``JPEGImages/``, ``Annotations/`` and ``ImageSets/`` under ``root``.

    Raises:
        VocFormatError: when none of the accepted layouts is found.
    """
    root = Path(root)
    for candidate in (root, root / "VOC2007", root / "VOCdevkit" / "VOC2007"):
        if (candidate / "Annotations").is_dir() and (candidate / "ImageSets").is_dir():
            return candidate
    raise VocFormatError(
        f"{root}: expected a Pascal VOC directory holding JPEGImages/, Annotations/ and "
        "ImageSets/Main/ (directly, in VOC2007/ or in VOCdevkit/VOC2007/)"
    )


def _text(node: ET.Element, tag: str, path: Path, default: str | None = None) -> str:
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        if default is not None:
            return default
        raise VocFormatError(f"{path}: missing <{tag}> in <{node.tag}>")
    return child.text.strip()


def _number(node: ET.Element, tag: str, path: Path) -> float:
    value = _text(node, tag, path)
    try:
        return float(value)
    except ValueError:
        raise VocFormatError(f"{path}: expected a number in <{tag}>, got {value!r}") from None


def _flag(node: ET.Element, tag: str, path: Path) -> bool:
    value = _text(node, tag, path, default="0")
    if value not in ("0", "1"):
        raise VocFormatError(f"{path}: expected 0 or 1 in <{tag}>, got {value!r}")
    return value == "1"


def parse_voc_xml(path: Path, classes: Sequence[str] | None = None) -> VocAnnotation:
    """Parse one VOC annotation file.

    Args:
        path: the ``.xml`` file; the image id is its stem.
        classes: allowed labels; None accepts any.

    Returns:
        The annotation, boxes converted to 0-based pixels.

    Raises:
        VocFormatError: unreadable XML, missing fields, a label outside ``classes``, or a box
            with ``xmax < xmin`` / ``ymax < ymin``.
    """
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise VocFormatError(f"{path}: annotation file not found") from None
    except ET.ParseError as exc:
        raise VocFormatError(f"{path}: invalid XML ({exc})") from None
    size = root.find("size")
    if size is None:
        raise VocFormatError(f"{path}: missing <size>")
    width, height = int(_number(size, "width", path)), int(_number(size, "height", path))
    boxes, labels, difficult, truncated = [], [], [], []
    for index, obj in enumerate(root.findall("object")):
        label = _text(obj, "name", path)
        if classes is not None and label not in classes:
            raise VocFormatError(
                f"{path}: object {index} has label {label!r}, expected one of {list(classes)}"
            )
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise VocFormatError(f"{path}: object {index} has no <bndbox>")
        x1, y1, x2, y2 = (_number(bndbox, t, path) for t in ("xmin", "ymin", "xmax", "ymax"))
        if x2 < x1 or y2 < y1:
            raise VocFormatError(
                f"{path}: object {index} has an empty box "
                f"(xmin {x1}, ymin {y1}, xmax {x2}, ymax {y2})"
            )
        boxes.append((x1 - 1.0, y1 - 1.0, x2 - 1.0, y2 - 1.0))  # VOC 1-based -> 0-based
        labels.append(label)
        difficult.append(_flag(obj, "difficult", path))
        truncated.append(_flag(obj, "truncated", path))
    return VocAnnotation(
        image_id=path.stem,
        width=width,
        height=height,
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        labels=labels,
        difficult=np.asarray(difficult, bool),
        truncated=np.asarray(truncated, bool),
    )


class VocDataset:
    """One split of a Pascal VOC style dataset.

    Args:
        root: dataset root (see the module docstring for the accepted layouts).
        split: name of a list in ``ImageSets/Main/`` (``train``, ``val``, ``trainval``, ``test``).
        classes: class names in class-id order; default: ``classes.txt`` at the root when
            present (one name per line), else the 20 VOC classes.

    Attributes:
        root: the resolved directory holding ``Annotations/``.
        split: the split name.
        ids: image ids in list order.
        classes: class names in class-id order.
    """

    def __init__(self, root: Path, split: str, classes: Sequence[str] | None = None) -> None:
        self.root = resolve_voc_root(Path(root))
        self.split = split
        list_path = self.root / "ImageSets" / "Main" / f"{split}.txt"
        if not list_path.is_file():
            available = sorted(
                p.stem
                for p in (self.root / "ImageSets" / "Main").glob("*.txt")
                if "_" not in p.stem
            )
            raise VocFormatError(f"{list_path}: split {split!r} not found; available: {available}")
        self.ids: list[str] = [
            line.split()[0] for line in list_path.read_text().splitlines() if line.strip()
        ]
        if classes is None:
            classes_path = self.root / "classes.txt"
            if classes_path.is_file():
                classes = [c.strip() for c in classes_path.read_text().splitlines() if c.strip()]
                if not classes:
                    raise VocFormatError(
                        f"{classes_path}: expected one class name per line, found none"
                    )
            else:
                classes = VOC_CLASSES
        if len(set(classes)) != len(classes):
            raise ValueError(f"expected distinct class names, got {list(classes)}")
        self.classes: list[str] = list(classes)
        self._cache: dict[str, VocAnnotation] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"VocDataset(root={str(self.root)!r}, split={self.split!r}, images={len(self)})"

    def annotation(self, image_id: str) -> VocAnnotation:
        """The ground truth of ``image_id`` (parsed once, then cached)."""
        cached = self._cache.get(image_id)
        if cached is None:
            path = self.root / "Annotations" / f"{image_id}.xml"
            cached = parse_voc_xml(path, self.classes)
            self._cache[image_id] = cached
        return cached

    def annotations(self) -> dict[str, VocAnnotation]:
        """Ground truth of every image of the split, by id (list order)."""
        return {image_id: self.annotation(image_id) for image_id in self.ids}

    def image_path(self, image_id: str) -> Path:
        """Path of the image file of ``image_id`` (``JPEGImages/<id>.jpg`` or another suffix)."""
        folder = self.root / "JPEGImages"
        for suffix in _IMAGE_SUFFIXES:
            path = folder / f"{image_id}{suffix}"
            if path.is_file():
                return path
        raise VocFormatError(f"{folder / image_id}.jpg: image file not found")

    def load_rgb(self, image_id: str) -> np.ndarray:
        """The image of ``image_id`` as np.ndarray[H, W, 3] uint8 RGB (EXIF orientation ignored,
        as the VOC annotations refer to the stored pixel grid)."""
        path = self.image_path(image_id)
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if bgr is None:
            raise VocFormatError(f"{path}: cannot decode the image")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _format_coordinate(value: float) -> str:
    """A VOC coordinate as text: whole numbers without a decimal point, others exactly."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def format_voc_xml(
    annotation: VocAnnotation,
    *,
    folder: str,
    database: str,
    image_suffix: str = ".jpg",
) -> bytes:
    """The VOC annotation file of one image, the inverse of :func:`parse_voc_xml`.

    Args:
        annotation: boxes in the project's 0-based pixels; written 1-based (``+ 1``).
        folder: the ``<folder>`` text (the dataset's name).
        database: the ``<source><database>`` text.
        image_suffix: suffix of the image file named in ``<filename>``.

    Returns:
        UTF-8 XML, two-space indented, one element a line, ending with a newline.
    """
    lines = [
        "<annotation>",
        f"  <folder>{folder}</folder>",
        f"  <filename>{annotation.image_id}{image_suffix}</filename>",
        "  <source>",
        f"    <database>{database}</database>",
        "  </source>",
        "  <size>",
        f"    <width>{annotation.width}</width>",
        f"    <height>{annotation.height}</height>",
        "    <depth>3</depth>",
        "  </size>",
        "  <segmented>0</segmented>",
    ]
    for index, label in enumerate(annotation.labels):
        x1, y1, x2, y2 = (_format_coordinate(float(v) + 1.0) for v in annotation.boxes[index])
        lines += [
            "  <object>",
            f"    <name>{label}</name>",
            "    <pose>Unspecified</pose>",
            f"    <truncated>{int(annotation.truncated[index])}</truncated>",
            f"    <difficult>{int(annotation.difficult[index])}</difficult>",
            "    <bndbox>",
            f"      <xmin>{x1}</xmin>",
            f"      <ymin>{y1}</ymin>",
            f"      <xmax>{x2}</xmax>",
            f"      <ymax>{y2}</ymax>",
            "    </bndbox>",
            "  </object>",
        ]
    lines.append("</annotation>")
    return ("\n".join(lines) + "\n").encode("utf-8")


def format_image_set(ids: Sequence[str]) -> bytes:
    """The text of an ``ImageSets/Main/<split>.txt`` list: one image id a line."""
    return "".join(f"{image_id}\n" for image_id in ids).encode()


def format_classes(classes: Sequence[str]) -> bytes:
    """The text of ``classes.txt``: one class name a line, in class-id order."""
    return "".join(f"{name}\n" for name in classes).encode()
