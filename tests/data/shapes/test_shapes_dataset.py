"""The generated shapes dataset: determinism, layout, annotation sanity, the summary's hash."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.data.shapes import (
    CLASSES,
    ShapeObject,
    encode_jpeg,
    generate_shapes_dataset,
    image_id_for,
    render_sample,
    voc_xml,
)
from app.data.voc import VocDataset, parse_voc_xml


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
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
    assert _tree_bytes(tmp_path) == _tree_bytes(dataset_dir)
    assert summary == json.loads((dataset_dir / "shapes.json").read_text())
    assert summary["images"] == {"train": 6, "val": 2, "test": 4}


def test_generating_twice_in_one_process_gives_identical_bytes(tmp_path: Path) -> None:
    for name in ("a", "b"):
        generate_shapes_dataset(
            tmp_path / name, seed=3, n_train=3, n_val=1, n_test=1, progress=False
        )
    first, second = _tree_bytes(tmp_path / "a"), _tree_bytes(tmp_path / "b")
    assert len(first) == 5 * 2 + 4 + 2  # images and XML, four lists, classes.txt, shapes.json
    assert first == second


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


def test_summary_hash_is_over_every_data_file(dataset_dir: Path) -> None:
    summary = json.loads((dataset_dir / "shapes.json").read_text())
    total = hashlib.sha256()
    for relative, data in _tree_bytes(dataset_dir).items():
        if relative != "shapes.json":
            total.update(f"{relative}\0{hashlib.sha256(data).hexdigest()}\n".encode())
    assert summary["sha256"] == total.hexdigest()
    per_split = {
        split: sum(
            len(VocDataset(dataset_dir, split).annotation(i))
            for i in VocDataset(dataset_dir, split).ids
        )
        for split in ("train", "val", "test")
    }
    assert {s: sum(c.values()) for s, c in summary["objects"].items()} == per_split
    assert summary["classes"] == list(CLASSES) and summary["seed"] == 7


def test_overwrite_is_explicit(tmp_path: Path) -> None:
    generate_shapes_dataset(tmp_path, seed=1, n_train=2, n_val=0, n_test=0, progress=False)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        generate_shapes_dataset(tmp_path, seed=1, n_train=1, n_val=0, n_test=0, progress=False)
    generate_shapes_dataset(
        tmp_path, seed=1, n_train=1, n_val=0, n_test=0, progress=False, overwrite=True
    )
    assert sorted(p.name for p in (tmp_path / "JPEGImages").iterdir()) == ["train_000000.jpg"]


def test_rejects_negative_counts_and_workers(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="expected n_val >= 0, got -1"):
        generate_shapes_dataset(tmp_path, seed=1, n_train=1, n_val=-1, n_test=0, progress=False)
    with pytest.raises(ValueError, match="expected workers >= 1, got 0"):
        generate_shapes_dataset(
            tmp_path, seed=1, n_train=1, n_val=0, n_test=0, progress=False, workers=0
        )


def test_layout_and_splits(dataset_dir: Path) -> None:
    main = dataset_dir / "ImageSets" / "Main"
    lists = {s: (main / f"{s}.txt").read_text().split() for s in ("train", "val", "test")}
    assert [len(v) for v in lists.values()] == [6, 2, 4]
    assert (
        lists["val"]
        == [image_id_for("val", 0), image_id_for("val", 1)]
        == ["val_000000", "val_000001"]
    )
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


def test_sample_matches_its_files(dataset_dir: Path) -> None:
    sample = render_sample(7, "test", 2)
    assert 60 <= sample.jpeg_quality <= 95
    stored = dataset_dir / "JPEGImages" / "test_000002.jpg"
    assert encode_jpeg(sample.image_bgr, sample.jpeg_quality) == stored.read_bytes()
    ann = parse_voc_xml(dataset_dir / "Annotations" / "test_000002.xml", CLASSES)
    assert ann.labels == [o.label for o in sample.objects]
    np.testing.assert_array_equal(ann.boxes, [o.box for o in sample.objects])


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
    assert "<folder>shapes</folder>" in path.read_text()


def test_jpeg_is_decodable_and_sized(dataset_dir: Path) -> None:
    path = next((dataset_dir / "JPEGImages").iterdir())
    image = cv2.imread(str(path))
    ann = parse_voc_xml(dataset_dir / "Annotations" / f"{path.stem}.xml")
    assert image is not None and image.shape == (ann.height, ann.width, 3)
