"""The generated shapes dataset: determinism, annotation sanity, boxes that match pixels."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.data.shapes import (
    CLASSES,
    ShapeObject,
    ShapeSpec,
    draw_shapes,
    generate_shapes_dataset,
    render_sample,
    shape_polygon,
    voc_xml,
)
from app.data.voc import VocDataset, parse_voc_xml


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    generate_shapes_dataset(root, seed=7, n_train=6, n_val=2, n_test=4, progress=False)
    return root


def test_same_seed_gives_identical_bytes(dataset_dir: Path, tmp_path: Path) -> None:
    summary = generate_shapes_dataset(
        tmp_path, seed=7, n_train=6, n_val=2, n_test=4, progress=False, workers=2
    )
    assert _tree_digest(tmp_path) == _tree_digest(dataset_dir)
    assert summary == json.loads((dataset_dir / "shapes.json").read_text())
    assert summary["images"] == {"train": 6, "val": 2, "test": 4}


def test_images_do_not_depend_on_split_sizes(dataset_dir: Path, tmp_path: Path) -> None:
    generate_shapes_dataset(tmp_path, seed=7, n_train=2, n_val=0, n_test=1, progress=False)
    for name in ("train_000000", "train_000001", "test_000000"):
        for relative in (f"JPEGImages/{name}.jpg", f"Annotations/{name}.xml"):
            assert (tmp_path / relative).read_bytes() == (dataset_dir / relative).read_bytes()


def test_the_seed_changes_the_images() -> None:
    a, b = render_sample(7, "train", 3), render_sample(8, "train", 3)
    assert a.image_bgr.shape != b.image_bgr.shape or not np.array_equal(a.image_bgr, b.image_bgr)
    with pytest.raises(ValueError, match="expected a split"):
        render_sample(7, "dev", 0)


def test_overwrite_is_explicit(dataset_dir: Path, tmp_path: Path) -> None:
    generate_shapes_dataset(tmp_path, seed=1, n_train=2, n_val=0, n_test=0, progress=False)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        generate_shapes_dataset(tmp_path, seed=1, n_train=1, n_val=0, n_test=0, progress=False)
    generate_shapes_dataset(
        tmp_path, seed=1, n_train=1, n_val=0, n_test=0, progress=False, overwrite=True
    )
    assert sorted(p.name for p in (tmp_path / "JPEGImages").iterdir()) == ["train_000000.jpg"]


def test_layout_and_splits(dataset_dir: Path) -> None:
    main = dataset_dir / "ImageSets" / "Main"
    lists = {s: (main / f"{s}.txt").read_text().split() for s in ("train", "val", "test")}
    assert [len(v) for v in lists.values()] == [6, 2, 4]
    assert (main / "trainval.txt").read_text().split() == lists["train"] + lists["val"]
    assert (dataset_dir / "classes.txt").read_text().split() == list(CLASSES)
    assert VocDataset(dataset_dir, "train").classes == list(CLASSES)


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_annotations_are_sane(dataset_dir: Path, split: str) -> None:
    dataset = VocDataset(dataset_dir, split)
    for image_id in dataset.ids:
        ann = dataset.annotation(image_id)
        image = dataset.load_rgb(image_id)
        assert image.shape == (ann.height, ann.width, 3)
        assert 300 <= max(ann.width, ann.height) <= 640
        assert 1 <= len(ann) <= 6
        assert set(ann.labels) <= set(CLASSES)
        x1, y1, x2, y2 = ann.boxes.T
        assert (x1 >= 0).all() and (y1 >= 0).all()
        assert (x2 <= ann.width - 1).all() and (y2 <= ann.height - 1).all()
        assert (x2 >= x1).all() and (y2 >= y1).all()
        assert np.array_equal(ann.boxes, np.round(ann.boxes))  # whole pixels


def test_xml_round_trip(tmp_path: Path) -> None:
    objects = [
        ShapeObject("star", (0, 5, 639, 99), True, False, 0.8),
        ShapeObject("cross", (10, 11, 12, 13), False, True, 0.1),
    ]
    path = tmp_path / "x.xml"
    path.write_bytes(voc_xml("x", 640, 480, objects))
    ann = parse_voc_xml(path, CLASSES)
    assert (ann.width, ann.height, ann.labels) == (640, 480, ["star", "cross"])
    np.testing.assert_array_equal(ann.boxes, [[0, 5, 639, 99], [10, 11, 12, 13]])
    assert ann.truncated.tolist() == [True, False]
    assert ann.difficult.tolist() == [False, True]
    assert "<xmin>1</xmin>" in path.read_text()  # 1-based on disk


@pytest.mark.parametrize("label", CLASSES)
def test_shapes_are_regular(label: str) -> None:
    pts = shape_polygon(label, 50.0, 0.3)
    sides = np.linalg.norm(pts - np.roll(pts, 1, axis=0), axis=1)
    np.testing.assert_allclose(sides, sides[0], rtol=1e-9)  # equal sides (star, cross too)
    assert np.linalg.norm(pts, axis=1).max() == pytest.approx(50.0)
    assert (
        len(pts)
        >= {"triangle": 3, "square": 4, "hexagon": 6, "star": 10, "cross": 12, "circle": 24}[label]
    )


def _pixels_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def _alone(spec: ShapeSpec, shape: tuple[int, int]) -> np.ndarray:
    """Mask of the pixels a white shape turns >= 128 on black: its coverage >= 0.5."""
    image = np.zeros((*shape, 3), np.uint8)
    draw_shapes(image, [spec])
    return image[..., 0] >= 128


@pytest.mark.parametrize("label", CLASSES)
@pytest.mark.parametrize(("center", "truncated"), [((60.3, 50.7), False), ((3.0, 95.0), True)])
def test_box_is_the_bounding_box_of_the_shape_pixels(
    label: str, center: tuple[float, float], truncated: bool
) -> None:
    spec = ShapeSpec(label, center, 30.0, 0.7, (255, 255, 255), (255, 255, 255), 2)
    image = np.zeros((100, 120, 3), np.uint8)
    (obj,) = draw_shapes(image, [spec])
    assert obj.box == _pixels_box(image[..., 0] >= 128)
    assert obj.truncated == truncated
    assert obj.label == label


def test_box_of_an_occluded_shape_covers_only_its_visible_pixels() -> None:
    white = (255, 255, 255)
    back = ShapeSpec("square", (50.0, 50.0), 35.0, 0.0, white)
    front = ShapeSpec("hexagon", (35.0, 50.0), 30.0, 0.0, white)
    image = np.zeros((100, 100, 3), np.uint8)
    first, second = draw_shapes(image, [back, front])
    visible = _alone(back, (100, 100)) & ~_alone(front, (100, 100))
    assert first.box == _pixels_box(visible)
    assert second.box == _pixels_box(_alone(front, (100, 100)))
    assert 0 < first.visible_fraction < 1 and second.visible_fraction == 1.0
    assert not first.truncated


def test_mostly_hidden_shape_is_difficult_and_hidden_shape_is_dropped() -> None:
    white = (255, 255, 255)
    small = ShapeSpec("circle", (50.0, 50.0), 20.0, 0.0, white)
    big = ShapeSpec("square", (50.0, 30.0), 40.0, math.pi / 4, white)
    image = np.zeros((100, 100, 3), np.uint8)
    objects = draw_shapes(image, [small, big])
    assert objects[0].difficult and objects[0].visible_fraction < 0.4
    huge = ShapeSpec("square", (50.0, 50.0), 70.0, math.pi / 4, white)
    assert [o.label for o in draw_shapes(image, [small, huge])] == ["square"]


def test_jpeg_is_decodable_and_sized(dataset_dir: Path) -> None:
    path = next((dataset_dir / "JPEGImages").iterdir())
    assert cv2.imread(str(path)) is not None
