"""``spp eval`` end to end on tiny hand-made datasets: the report, the detection loop, recording."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from app.cli import main
from app.data.voc import (
    VocAnnotation,
    VocDataset,
    format_classes,
    format_image_set,
    format_voc_xml,
)
from app.evaluation.runner import detect_split, evaluate, evaluate_classification
from app.evaluation.voc_ap import evaluate_detections
from app.inference.detector import Detection, DetectionResult, DetectOptions
from app.model.config import DetectionConfig, ProposalConfig
from app.model.store import build_random_model, read_manifest, save_model

CLASSES = ["circle", "square"]
GROUND_TRUTH = {  # image id -> [(label, box 0-based)]
    "a": [("circle", (10, 10, 29, 29))],
    "b": [("circle", (0, 0, 9, 9)), ("square", (20, 20, 39, 39))],
    "c": [("square", (5, 5, 30, 25))],
}


def _write_dataset(root: Path) -> Path:
    """A VOC dataset, split ``val`` = a, b, c: 64 x 48 images with the boxes drawn in."""
    for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for image_id, objects in GROUND_TRUTH.items():
        image = np.full((48, 64, 3), 40, np.uint8)
        for label, (x1, y1, x2, y2) in objects:
            colour = (30, 200, 30) if label == "circle" else (200, 30, 30)
            cv2.rectangle(image, (x1, y1), (x2, y2), colour, -1)
        cv2.imwrite(str(root / "JPEGImages" / f"{image_id}.png"), image)
        annotation = VocAnnotation(
            image_id=image_id,
            width=64,
            height=48,
            boxes=np.array([box for _, box in objects], np.float32),
            labels=[label for label, _ in objects],
            difficult=np.zeros(len(objects), bool),
            truncated=np.zeros(len(objects), bool),
        )
        (root / "Annotations" / f"{image_id}.xml").write_bytes(
            format_voc_xml(annotation, folder="test", database="test")
        )
    (root / "ImageSets" / "Main" / "val.txt").write_bytes(format_image_set(list(GROUND_TRUTH)))
    (root / "classes.txt").write_bytes(format_classes(CLASSES))
    return root


def _detection(image_id: str, label: str, score: float, box: tuple[int, ...]) -> dict[str, Any]:
    return {"image_id": image_id, "label": label, "score": score, "box": list(box)}


def _evaluate_file(
    tmp_path: Path, detections: list[dict[str, Any]], **options: Any
) -> dict[str, Any]:
    """``evaluate`` of ``detections`` (written to ``tmp_path/detections.json``) on the dataset
    of :data:`GROUND_TRUTH` at ``tmp_path/voc``, into ``tmp_path/out``."""
    path = tmp_path / "detections.json"
    path.write_text(json.dumps(detections))
    return evaluate(
        voc_root=_write_dataset(tmp_path / "voc"),
        split="val",
        store=tmp_path / "store",
        model_name=None,
        detections_file=path,
        scales="single",
        out_dir=tmp_path / "out",
        progress=False,
        **options,
    )


def test_evaluate_scores_a_detections_file_by_hand(tmp_path: Path) -> None:
    detections = [
        _detection("a", "circle", 0.9, (10, 10, 29, 29)),  # true positive
        _detection("b", "circle", 0.8, (40, 30, 60, 45)),  # false positive (background)
        _detection("b", "circle", 0.7, (0, 0, 9, 9)),  # true positive
    ]
    report = _evaluate_file(tmp_path, detections)
    # circle, ranked: TP (P 1, R 1/2), FP (P 1/2, R 1/2), TP (P 2/3, R 1): the 11-point AP
    # takes precision 1 at recall 0..0.5 (6 points) and 2/3 at 0.6..1 (5 points).
    circle_ap = (6 * 1.0 + 5 * (2 / 3)) / 11
    summary = report["summary"]
    assert summary["ap"]["circle"] == pytest.approx(circle_ap)
    assert summary["ap"]["square"] == 0.0  # two ground-truth squares, no detection
    assert summary["map"] == pytest.approx(circle_ap / 2)
    assert (summary["images"], summary["scales"], summary["proposal_recall"]) == (3, None, None)
    assert json.loads((tmp_path / "out" / "report.json").read_text()) == report
    assert (tmp_path / "out" / report["plots"]["precision_recall"]).is_file()
    assert report["settings"]["detections_file"] == str(tmp_path / "detections.json")
    assert report["detection"]["false_positives"]  # the breakdown is part of the report


def test_spp_compare_prints_the_paired_bootstrap(tmp_path: Path, capsys: Any) -> None:
    root = _write_dataset(tmp_path / "voc")
    found = [_detection("a", "circle", 0.9, (10, 10, 29, 29)),
             _detection("b", "square", 0.8, (20, 20, 39, 39))]  # fmt: skip
    noisy = [*found, _detection("c", "square", 0.95, (40, 30, 60, 45))]  # an FP ranked first
    for name, detections in (("a", noisy), ("b", found)):
        (tmp_path / f"{name}.json").write_text(json.dumps(detections))
    argv = ["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--voc-root",
            str(root), "--split", "val", "--resamples", "40", "--seed", "1"]  # fmt: skip
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    single = evaluate_detections(noisy, VocDataset(root, "val")).map
    assert printed["map_a"] == pytest.approx(single, abs=1e-5)
    assert printed["difference"] > 0 and printed["low"] >= 0 and printed["resamples"] == 40


def test_limit_keeps_the_first_images(tmp_path: Path) -> None:
    report = _evaluate_file(tmp_path, [_detection("a", "circle", 0.9, (10, 10, 29, 29))], limit=1)
    assert report["summary"]["images"] == 1
    assert report["summary"]["ap"] == {"circle": 1.0, "square": None}  # no square: not in the mAP
    assert report["summary"]["map"] == 1.0


class _FixedDetector:
    """Returns preset detections and timings per image, and records the options it was given."""

    def __init__(self) -> None:
        self.options: list[DetectOptions] = []
        self.timings = {"a": {"conv5": 2.0, "fc": 1.0}, "b": {"conv5": 4.0, "fc": 3.0}, "c": {}}

    def detect(
        self, images: list[np.ndarray], proposals: list[np.ndarray], options: DetectOptions
    ) -> list[DetectionResult]:
        [image], [boxes] = images, proposals
        self.options.append(options)
        image_id = "abc"[int(image[0, 0, 0]) - 1]
        found = [
            Detection("circle", 0, float(x1), 0.01, (float(x1), float(y1), float(x2), float(y2)))
            for x1, y1, x2, y2 in boxes
        ]
        return [DetectionResult(found, len(boxes), [96], 64, 48, dict(self.timings[image_id]))]


class _Dataset:
    def __init__(self) -> None:
        self.ids = ["a", "b", "c"]

    def load_rgb(self, image_id: str) -> np.ndarray:
        return np.full((48, 64, 3), "abc".index(image_id) + 1, np.uint8)


def test_detect_split_keeps_every_detection_and_averages_stage_times() -> None:
    detector = _FixedDetector()
    proposals = {
        "a": np.array([[1, 2, 3, 4], [5, 6, 7, 8]], np.float32),
        "b": np.zeros((0, 4), np.float32),
        "c": np.array([[9, 9, 20, 20]], np.float32),
    }
    records, mean = detect_split(detector, _Dataset(), proposals, "multi", progress=False)  # type: ignore[arg-type]
    assert records == [
        {"image_id": "a", "label": "circle", "score": 1.0, "box": [1.0, 2.0, 3.0, 4.0]},
        {"image_id": "a", "label": "circle", "score": 5.0, "box": [5.0, 6.0, 7.0, 8.0]},
        {"image_id": "c", "label": "circle", "score": 9.0, "box": [9.0, 9.0, 20.0, 20.0]},
    ]
    assert mean == {"conv5": 2.0, "fc": 1.33}  # (2 + 4 + 0) / 3, (1 + 3 + 0) / 3 to 0.01 ms
    # Evaluation scores every detection, whatever the API's default confidence threshold.
    assert detector.options == [DetectOptions(scales="multi", min_confidence=0.0)] * 3


@pytest.fixture
def store(tmp_path: Path) -> Path:
    model = build_random_model(
        CLASSES,
        width=0.125,
        fc_dim=32,
        detection=DetectionConfig(single_scale=96, multi_scales=(64, 96), min_score=-1e9),
        proposals=ProposalConfig(max_side=0, max_proposals=50),
    )
    manifest = model.manifest
    save_model(
        model.net,
        tmp_path / "store" / "tiny",
        name="tiny",
        version="1",
        classes=CLASSES,
        preprocess=manifest.preprocess,
        detection=manifest.detection,
        proposals=manifest.proposals,
    )
    return tmp_path / "store"


def test_evaluate_a_stored_model_records_its_metrics(tmp_path: Path, store: Path) -> None:
    root = _write_dataset(tmp_path / "voc")
    weights = (store / "tiny" / "weights.safetensors").read_bytes()
    report = evaluate(
        voc_root=root,
        split="val",
        store=store,
        model_name="tiny",
        detections_file=None,
        scales="single",
        out_dir=tmp_path / "out",
        device="cpu",
        record=True,
        workers=1,
        progress=False,
        command="spp eval --record",
    )
    summary = report["summary"]
    assert report["settings"]["command"] == "spp eval --record", "the caller's, not sys.argv"
    assert summary["images"] == 3 and summary["scales"] == "single"
    assert 0.0 <= summary["proposal_recall"]["0.5"] <= 1.0
    assert report["settings"]["model"] == "tiny"
    assert list((tmp_path / "out" / "cache").glob("proposals-val-*.safetensors")), "cached"
    assert not (root / "cache").exists(), "the dataset folder is only read"
    recorded = read_manifest(store / "tiny").metrics["val_single"]
    assert recorded == {**summary, "command": report["settings"]["command"]}
    assert (store / "tiny" / "weights.safetensors").read_bytes() == weights
    # the detections it scored are kept: scoring them again gives the same report
    again = evaluate(voc_root=root, split="val", store=store, model_name=None,
                     detections_file=tmp_path / "out" / "detections.json", scales="single",
                     out_dir=tmp_path / "again", progress=False)  # fmt: skip
    assert again["detection"] == report["detection"]


def test_record_as_names_a_second_dataset_whose_split_has_the_same_name(
    tmp_path: Path, store: Path
) -> None:
    root = _write_dataset(tmp_path / "voc")
    common: dict[str, Any] = {"voc_root": root, "split": "val", "store": store, "device": "cpu"}
    common |= {"record": True, "workers": 1, "progress": False}
    evaluate(model_name="tiny", detections_file=None, scales="single", out_dir=tmp_path / "a",
             **common)  # fmt: skip
    evaluate(model_name="tiny", detections_file=None, scales="single", out_dir=tmp_path / "b",
             record_as="real-val", **common)  # fmt: skip
    evaluate_classification(model_name="tiny", out_dir=tmp_path / "c", record_as="real-val",
                            **common)  # fmt: skip
    metrics = read_manifest(store / "tiny").metrics
    assert {"val_single", "real-val_single", "real-val_classify"} <= set(metrics)
    assert metrics["val_single"]["map"] == metrics["real-val_single"]["map"]


@pytest.mark.parametrize(
    ("size", "views", "key"),
    [
        (None, "full", "val_classify"),
        (64, "full", "val_classify_64"),
        (None, "detect", "val_classify_detect_views"),
    ],
)
def test_evaluate_classification_records_under_a_key_naming_its_options(
    tmp_path: Path, store: Path, size: int | None, views: Any, key: str
) -> None:
    root = _write_dataset(tmp_path / "voc")
    report = evaluate_classification(
        voc_root=root,
        split="val",
        store=store,
        model_name="tiny",
        out_dir=tmp_path / "out",
        device="cpu",
        record=True,
        size=size,
        views=views,
        workers=1,
        progress=False,
    )
    assert report["summary"]["images"] == 2  # a and c hold one object each; b holds two
    assert report["settings"]["views"] == views
    assert json.loads((tmp_path / "out" / "classification.json").read_text()) == report
    assert read_manifest(store / "tiny").metrics[key] == report["summary"]
