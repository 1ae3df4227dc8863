"""A small-scale run of the whole training pipeline: every stage writes what the next needs,
the model loads, detects, and a second run resumes instead of retraining."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from safetensors.numpy import load_file

from app.cli import main as spp
from app.data.proposals import propose
from app.data.voc import VocDataset
from app.inference.detector import Detector
from app.model.store import load_model
from app.training.pipeline import Pipeline
from app.training.recipe import TrainConfig
from app.training.workdir import StaleWorkError

RECIPE: dict[str, Any] = {
    "name": "tiny-shapes",
    "version": "0.0.1",
    "data": {
        "kind": "shapes",
        "seed": 5,
        "train": 6,
        "val": 3,
        "pretrain_extra": 3,
        "detect_extra": 2,
    },
    "model": {"width": 0.125, "fc_dim": 32},
    "proposals": {"max_side": 160, "max_proposals": 150},
    "pretrain": {
        "epochs": 2,
        "finish_epochs": 1,
        "batch_size": 8,
        "crops_per_object": 1,
        "scene_views": 1,
        "background_per_image": 1,
        "background_source": "proposals",
    },
    "finetune": {
        "iterations": 20,
        "batch_size": 16,
        "fg_per_image": 8,
        "bg_per_image": 8,
        "far_bg_per_image": 4,
    },
    "svm": {"initial_negatives": 200, "retrain_after": 50, "chunk": 500},
    "workers": 1,
}


def _train(recipe: dict[str, Any], root: Path) -> tuple[Path, Path, Path]:
    """``spp train all`` on ``recipe`` under ``root``: (work dir, store, recipe file)."""
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    work, store = root / "work", root / "store"
    assert (
        spp(["train", "all", "--config", str(path), "--work", str(work), "--store", str(store)])
        == 0
    )
    return work, store, path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return _train(RECIPE, tmp_path_factory.mktemp("pipeline"))


def test_every_stage_left_its_output(trained: tuple[Path, Path, Path]) -> None:
    work, _store, _ = trained
    assert (work / "data" / "ImageSets" / "Main" / "train.txt").is_file()
    assert list((work / "proposals").glob("proposals-train-*.safetensors"))
    assert (work / "pretrain" / "checkpoint.safetensors").is_file()
    progress = json.loads((work / "pretrain" / "checkpoint.json").read_text())["progress"]
    assert [h["epoch"] for h in progress["history"]] == [1, 2, 3], "2 epochs + 1 finishing"
    assert list((work / "conv5").glob("train_*@*.safetensors")), "stage 2 caches conv5"
    # The stage-1 extra images that also train stages 3-5 have caches of their own (their ids
    # repeat the train split's).
    assert (work / "pretrain-data" / "ImageSets" / "Main" / "train.txt").is_file()
    assert list((work / "proposals" / "extra").glob("proposals-train-*.safetensors"))
    assert {p.name.split("@")[0] for p in (work / "conv5" / "extra").glob("*.safetensors")} <= {
        "train_000000",
        "train_000001",
    }
    for name in ("finetune-samples.safetensors", "det_head.safetensors", "svm.safetensors"):
        assert (work / "detect" / name).is_file(), name
    events = [json.loads(line)["event"] for line in (work / "log.jsonl").read_text().splitlines()]
    for event in (
        "pretrain-done",
        "finetune-done",
        "bbox-done",
        "svm-done",
        "calibration-done",
        "model-saved",
    ):
        assert event in events


def test_the_model_loads_and_detects(trained: tuple[Path, Path, Path]) -> None:
    work, store, _ = trained
    model = load_model(store, "tiny-shapes")
    assert model.classes == ["circle", "square", "triangle", "star", "hexagon", "cross"]
    training = model.manifest.training
    assert training["seeds"]["data"] == 5 and training["data"]["sha256"]
    assert "spp" in training["command"]
    assert model.net.svm.weight.abs().sum() > 0, "SVMs were trained"
    assert model.net.bbox.weight.abs().sum() > 0, "regressors were trained"
    assert model.manifest.model.cls_background, "the recipe asks for background windows"
    assert model.net.cls_fc8.out_features == len(model.classes) + 1
    dataset = VocDataset(work / "data", "val")
    image = dataset.load_rgb(dataset.ids[0])
    [result] = Detector(model, "cpu").detect([image], [propose(image, model.manifest.proposals)])
    assert result.num_proposals > 0
    assert all(np.isfinite(d.box).all() for d in result.detections)


def test_a_second_run_resumes(trained: tuple[Path, Path, Path]) -> None:
    work, _, recipe = trained
    before = (work / "detect" / "det_head.safetensors").stat().st_mtime_ns
    pipeline = Pipeline(TrainConfig.from_yaml(recipe), work, progress=False)
    net = pipeline.run_pretrain()  # every epoch is in the checkpoint: no training happens
    assert net is not None
    assert (work / "detect" / "det_head.safetensors").stat().st_mtime_ns == before


def test_detection_images_are_the_train_split_then_the_first_extra_images(
    trained: tuple[Path, Path, Path],
) -> None:
    work, store, recipe = trained
    pipeline = Pipeline(TrainConfig.from_yaml(recipe), work, progress=False)
    model = load_model(store, "tiny-shapes")
    train, extra = pipeline.detection_images(Detector(model, "cpu"), model.classes)
    assert train.dataset.ids == VocDataset(work / "data", "train").ids
    assert extra.dataset.ids == VocDataset(work / "pretrain-data", "train").ids[:2]
    assert extra.dataset.root == (work / "pretrain-data").resolve()
    assert extra.cache.root == work / "conv5" / "extra" != train.cache.root
    for part in (train, extra):
        assert set(part.windows) == set(part.dataset.ids)
    events = [json.loads(line) for line in (work / "log.jsonl").read_text().splitlines()]
    [samples] = [e for e in events if e["event"] == "finetune-samples"]
    assert samples["images"] == 8, "6 train images + 2 extra ones gave fine-tuning windows"
    # background_source: proposals had stage 1 run selective search on all its images.
    [extra_cache] = (work / "proposals" / "extra").glob("proposals-train-*.safetensors")
    assert set(load_file(str(extra_cache))) == set(VocDataset(work / "pretrain-data", "train").ids)


def test_more_extra_detection_images_than_stage_1_has_is_an_error(
    trained: tuple[Path, Path, Path],
) -> None:
    work, store, recipe = trained
    config = TrainConfig.from_yaml(recipe)
    model = load_model(store, "tiny-shapes")
    pipeline = Pipeline(config, work, progress=False)
    more = config.data.model_copy(update={"detect_extra": 4})
    pipeline.config = config.model_copy(update={"data": more})
    with pytest.raises(ValueError, match="detect_extra = 4"):
        pipeline.detection_images(Detector(model, "cpu"), model.classes)


def test_classify_eval_of_the_trained_model(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """`spp eval --task classify` at the model's size and at another: both reports, and the
    recorded metrics keep the two apart."""
    work, store, _ = trained
    common = ["eval", "--voc-root", str(work / "data"), "--split", "train", "--task", "classify"]
    common += ["--store", str(store), "--model", "tiny-shapes", "--record"]
    assert spp([*common, "--out", str(tmp_path / "a")]) == 0
    assert spp([*common, "--out", str(tmp_path / "b"), "--classify-size", "96"]) == 0
    assert spp([*common, "--out", str(tmp_path / "c"), "--views", "detect"]) == 0
    default = json.loads((tmp_path / "a" / "classification.json").read_text())
    other = json.loads((tmp_path / "b" / "classification.json").read_text())
    by_detection = json.loads((tmp_path / "c" / "classification.json").read_text())
    assert default["settings"]["size"] == 224 and other["settings"]["size"] == 96
    assert by_detection["settings"]["views"] == "detect"
    assert by_detection["summary"]["images"] == default["summary"]["images"]
    assert default["summary"]["images"] > 0, "the tiny train split has one-object images"
    for report in (default, other):
        summary = report["summary"]
        assert summary["images"] == sum(b["images"] for b in summary["by_share"].values())
    metrics = load_model(store, "tiny-shapes").manifest.metrics
    assert metrics["train_classify"]["images"] == default["summary"]["images"]
    assert "train_classify_96" in metrics and "train_classify_detect_views" in metrics


def test_eval_of_a_detections_file(trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """`spp eval --detections`: the val split's own boxes score AP 1 per class present, and a
    box on nothing, ranked first, is a background false positive in the report."""
    work, _, _ = trained
    dataset = VocDataset(work / "data", "val")
    detections = [
        {"image_id": i, "label": label, "score": 0.5, "box": [float(v) for v in box]}
        for i in dataset.ids
        for box, label, hard in zip(*_boxes(dataset, i), strict=True)
        if not hard
    ]
    first = detections[0]
    detections.append({**first, "score": 0.9, "box": [0.0, 0.0, 1.0, 1.0]})
    path = tmp_path / "detections.json"
    path.write_text(json.dumps(detections))
    out = tmp_path / "report"
    assert (
        spp(
            [
                "eval",
                "--voc-root",
                str(work / "data"),
                "--split",
                "val",
                "--detections",
                str(path),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads((out / "report.json").read_text())["detection"]
    wrong = report["false_positives"][first["label"]]
    assert (
        wrong["background"] == 1 and wrong["ranked"] == report["per_class"][first["label"]]["npos"]
    )
    assert report["false_positives"]["all"]["background"] == 1
    assert (
        sum(report["false_positives"]["all"][k] for k in ("duplicate", "localisation", "confusion"))
        == 0
    )


def _boxes(dataset: VocDataset, image_id: str) -> tuple[list[list[float]], list[str], list[bool]]:
    ann = dataset.annotation(image_id)
    return ann.boxes.tolist(), list(ann.labels), ann.difficult.tolist()


def test_classify_command_by_detection(
    trained: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """`spp classify --views detect` runs selective search itself and answers what
    ``Detector.classify(views="detect")`` does on those windows."""
    work, store, _ = trained
    dataset = VocDataset(work / "data", "val")
    path = dataset.image_path(dataset.ids[0])
    args = ["classify", "--store", str(store), "--model", "tiny-shapes", "--json", "--top-k", "3"]
    assert spp([*args, "--views", "detect", str(path)]) == 0
    got = json.loads(capsys.readouterr().out)[str(path)]
    model = load_model(store, "tiny-shapes")
    image = dataset.load_rgb(dataset.ids[0])
    [expected] = Detector(model, "cpu").classify(
        [image], top_k=3, views="detect", proposals=[propose(image, model.manifest.proposals)]
    )
    assert [p["label"] for p in got] == [p.label for p in expected]
    assert [p["probability"] for p in got] == pytest.approx([p.probability for p in expected])


def test_a_changed_recipe_section_refuses_its_stale_outputs(
    trained: tuple[Path, Path, Path],
) -> None:
    """Resuming with other fine-tuning settings would reuse the old fine-tuned head: refused,
    naming what to delete; settings no stage caches (``bbox_alpha``) resume as before."""
    work, _, recipe = trained
    config = TrainConfig.from_yaml(recipe)
    longer = config.model_copy(
        update={"finetune": config.finetune.model_copy(update={"iterations": 40})}
    )
    with pytest.raises(StaleWorkError, match=r"finetune section.*detect"):
        Pipeline(longer, work, progress=False)
    Pipeline(config.model_copy(update={"bbox_alpha": 10.0}), work, progress=False)
    Pipeline(config, work, progress=False)


@pytest.fixture(scope="module")
def warm_started(
    trained: tuple[Path, Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, Path]:
    """The v2 shape of recipe at small scale: stage 1 taken from the model ``trained`` made,
    then conv fine-tuning (stage 2b) and stages 3-5 on realistic data."""
    _, first_store, _ = trained
    root = tmp_path_factory.mktemp("pipeline-v2")
    recipe = {
        **RECIPE,
        "version": "0.0.2",
        "data": {**RECIPE["data"], "knobs": "realistic"},
        "pretrain": {
            "init_from": str(first_store / "tiny-shapes"),
            "epochs": 0,
            "background_per_image": 1,
        },
        "conv_finetune": {
            "iterations": 4,
            "windows_per_image": 16,
            "scales": [160, 200],
            "checkpoint_every": 2,
        },
    }
    work, store, _ = _train(recipe, root)
    return work, store, first_store


def test_a_warm_started_run_fine_tunes_conv3_and_up_only(
    warm_started: tuple[Path, Path, Path],
) -> None:
    work, store, first_store = warm_started
    events = [json.loads(line)["event"] for line in (work / "log.jsonl").read_text().splitlines()]
    assert "pretrain-warm-start" in events and "pretrain-done" not in events
    assert events.index("conv-finetune-done") < events.index("finetune-done")
    assert not (work / "pretrain").exists(), "stage 1 did not train"
    assert (work / "conv-finetune" / "net.safetensors").is_file()
    first = load_model(first_store, "tiny-shapes")
    second = load_model(store, "tiny-shapes")
    trunk1, trunk2 = first.net.trunk, second.net.trunk
    for name in ("conv1", "conv2"):
        assert torch.equal(getattr(trunk1, name).weight, getattr(trunk2, name).weight), name
    for name in ("conv3", "conv4", "conv5"):
        assert not torch.equal(getattr(trunk1, name).weight, getattr(trunk2, name).weight), name
    assert second.manifest.training["recipe"]["data"]["knobs"]["background_split"]
    dataset = VocDataset(work / "data", "val")
    image = dataset.load_rgb(dataset.ids[0])
    [result] = Detector(second, "cpu").detect([image], [propose(image, second.manifest.proposals)])
    assert result.num_proposals > 0
