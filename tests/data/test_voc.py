"""The Pascal VOC reader and writer: layouts, the 1-based <-> 0-based conversion, round trips,
errors naming files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from app.data.voc import (
    VOC_CLASSES,
    VocAnnotation,
    VocDataset,
    VocFormatError,
    format_classes,
    format_image_set,
    format_voc_xml,
    parse_voc_xml,
)

XML = """<annotation>
  <filename>000005.jpg</filename>
  <size><width>{w}</width><height>{h}</height><depth>3</depth></size>
  <object>
    <name>chair</name><pose>Rear</pose><truncated>0</truncated><difficult>0</difficult>
    <bndbox><xmin>263</xmin><ymin>211</ymin><xmax>324</xmax><ymax>339</ymax></bndbox>
  </object>
  <object>
    <name>chair</name><pose>Unspecified</pose><truncated>1</truncated><difficult>1</difficult>
    <bndbox><xmin>1</xmin><ymin>1</ymin><xmax>8</xmax><ymax>8.5</ymax></bndbox>
  </object>
  <object>
    <name>person</name>
    <bndbox><xmin>5</xmin><ymin>7</ymin><xmax>5</xmax><ymax>7</ymax></bndbox>
  </object>
</annotation>
"""


def _write(
    base: Path,
    image_id: str = "000005",
    xml: str | None = None,
    width: int = 500,
    height: int = 375,
) -> Path:
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (base / folder).mkdir(parents=True, exist_ok=True)
    (base / "Annotations" / f"{image_id}.xml").write_text(xml or XML.format(w=width, h=height))
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 2] = 255  # pure red in BGR
    cv2.imwrite(str(base / "JPEGImages" / f"{image_id}.png"), image)
    (base / "ImageSets" / "Main" / "test.txt").write_text(f"{image_id}\n\n")
    (base / "ImageSets" / "Main" / "chair_test.txt").write_text(f"{image_id}  1\n")
    return base


@pytest.mark.parametrize("layout", ["", "VOC2007", "VOCdevkit/VOC2007"])
def test_accepted_layouts(tmp_path: Path, layout: str) -> None:
    _write(tmp_path / layout if layout else tmp_path)
    dataset = VocDataset(tmp_path, "test")
    assert dataset.ids == ["000005"]
    assert len(dataset) == 1
    assert dataset.classes == list(VOC_CLASSES)  # no classes.txt: the 20 VOC classes


def test_annotation_is_converted_to_zero_based(tmp_path: Path) -> None:
    ann = VocDataset(_write(tmp_path), "test").annotation("000005")
    assert (ann.image_id, ann.width, ann.height) == ("000005", 500, 375)
    assert ann.boxes.dtype == np.float32 and ann.boxes.shape == (3, 4)
    np.testing.assert_array_equal(ann.boxes, [[262, 210, 323, 338], [0, 0, 7, 7.5], [4, 6, 4, 6]])
    assert ann.labels == ["chair", "chair", "person"]
    assert ann.difficult.tolist() == [False, True, False]  # missing tag -> 0
    assert ann.truncated.tolist() == [False, True, False]


def test_load_rgb_returns_rgb_uint8(tmp_path: Path) -> None:
    dataset = VocDataset(_write(tmp_path, width=20, height=10), "test")
    image = dataset.load_rgb("000005")
    assert image.shape == (10, 20, 3) and image.dtype == np.uint8
    assert image[0, 0].tolist() == [255, 0, 0]
    assert dataset.image_path("000005").name == "000005.png"


def test_classes_txt_and_explicit_classes(tmp_path: Path) -> None:
    _write(tmp_path)
    (tmp_path / "classes.txt").write_text("person\nchair\n")
    assert VocDataset(tmp_path, "test").classes == ["person", "chair"]
    with pytest.raises(VocFormatError, match=r"000005\.xml: object 0 has label 'chair'"):
        VocDataset(tmp_path, "test", classes=["person"]).annotation("000005")


def test_missing_split_lists_the_available_ones(tmp_path: Path) -> None:
    _write(tmp_path)
    with pytest.raises(
        VocFormatError,
        match=r"trainval\.txt: split 'trainval' not found; "
        r"available: \['test'\]",
    ):
        VocDataset(tmp_path, "trainval")


def test_not_a_voc_directory(tmp_path: Path) -> None:
    with pytest.raises(VocFormatError, match="expected a Pascal VOC directory"):
        VocDataset(tmp_path, "test")


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        ("<annotation><size>", "invalid XML"),
        ("<annotation></annotation>", "missing <size>"),
        (
            "<annotation><size><width>a</width><height>2</height></size></annotation>",
            "expected a number in <width>, got 'a'",
        ),
        (
            "<annotation><size><width>5</width><height>5</height></size><object><name>cat</name>"
            "</object></annotation>",
            "object 0 has no <bndbox>",
        ),
        (
            "<annotation><size><width>5</width><height>5</height></size><object><name>cat</name>"
            "<bndbox><xmin>3</xmin><ymin>1</ymin><xmax>2</xmax><ymax>4</ymax></bndbox></object>"
            "</annotation>",
            "object 0 has an empty box",
        ),
        (
            "<annotation><size><width>5</width><height>5</height></size><object><name>cat</name>"
            "<difficult>yes</difficult><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax>"
            "<ymax>4</ymax></bndbox></object></annotation>",
            "expected 0 or 1 in <difficult>",
        ),
    ],
)
def test_malformed_xml_errors_name_the_file(tmp_path: Path, xml: str, message: str) -> None:
    path = tmp_path / "bad.xml"
    path.write_text(xml)
    with pytest.raises(VocFormatError, match=message) as info:
        parse_voc_xml(path)
    assert str(path) in str(info.value)


def test_missing_files_are_named(tmp_path: Path) -> None:
    dataset = VocDataset(_write(tmp_path), "test")
    with pytest.raises(VocFormatError, match=r"nope\.xml: annotation file not found"):
        dataset.annotation("nope")
    with pytest.raises(VocFormatError, match=r"nope\.jpg: image file not found"):
        dataset.load_rgb("nope")
    (tmp_path / "JPEGImages" / "000005.png").write_bytes(b"not an image")
    with pytest.raises(VocFormatError, match="cannot decode the image"):
        dataset.load_rgb("000005")


def test_image_without_objects(tmp_path: Path) -> None:
    xml = "<annotation><size><width>5</width><height>4</height></size></annotation>"
    ann = VocDataset(_write(tmp_path, xml=xml), "test").annotation("000005")
    assert ann.boxes.shape == (0, 4) and ann.labels == [] and ann.difficult.shape == (0,)


def _annotation(boxes: list[list[float]], labels: list[str]) -> VocAnnotation:
    return VocAnnotation(
        image_id="img_1",
        width=64,
        height=48,
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        labels=labels,
        difficult=np.arange(len(labels)) % 2 == 1,
        truncated=np.arange(len(labels)) % 3 == 0,
    )


@pytest.mark.parametrize(
    "boxes",
    [
        [[0, 0, 63, 47], [10, 11, 12, 13], [5, 5, 5, 5]],
        [[0.5, 1.25, 7.75, 9.1], [262.3, 210.0, 323.9, 338.01]],
        [],
    ],
)
def test_written_xml_reads_back_identically(tmp_path: Path, boxes: list[list[float]]) -> None:
    labels = ["dog", "cat", "dog"][: len(boxes)]
    original = _annotation(boxes, labels)
    path = tmp_path / "img_1.xml"
    path.write_bytes(format_voc_xml(original, folder="pets", database="test"))
    back = parse_voc_xml(path, ["cat", "dog"])
    assert (back.image_id, back.width, back.height, back.labels) == ("img_1", 64, 48, labels)
    np.testing.assert_array_equal(back.boxes, original.boxes)
    np.testing.assert_array_equal(back.difficult, original.difficult)
    np.testing.assert_array_equal(back.truncated, original.truncated)


def test_written_xml_is_one_based_with_whole_pixels_as_integers() -> None:
    text = format_voc_xml(
        _annotation([[0, 9, 63, 47.5]], ["dog"]),
        folder="pets",
        database="Pets db",
        image_suffix=".png",
    ).decode()
    assert "<xmin>1</xmin>" in text and "<ymin>10</ymin>" in text
    assert "<xmax>64</xmax>" in text and "<ymax>48.5</ymax>" in text
    assert "<folder>pets</folder>" in text and "<database>Pets db</database>" in text
    assert "<filename>img_1.png</filename>" in text
    assert "<truncated>1</truncated>" in text and "<difficult>0</difficult>" in text
    assert text.endswith("</annotation>\n")


def test_written_lists_and_classes_are_read_by_the_dataset(tmp_path: Path) -> None:
    _write(tmp_path, image_id="b")
    _write(tmp_path, image_id="a")
    (tmp_path / "ImageSets" / "Main" / "test.txt").write_bytes(format_image_set(["b", "a"]))
    (tmp_path / "classes.txt").write_bytes(format_classes(["person", "chair"]))
    dataset = VocDataset(tmp_path, "test")
    assert dataset.ids == ["b", "a"]
    assert dataset.classes == ["person", "chair"]
    assert format_image_set([]) == b""
