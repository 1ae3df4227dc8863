"""The small example recipe (app/training/configs/zf5-tiny.yaml), as docs/training.md's
"Train your own in a few minutes" runs it: train, evaluate, write the card, serve."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli import main as spp
from app.data.proposals import propose
from app.data.voc import VocDataset
from app.inference.detector import DetectOptions, Detector
from app.model.store import load_model, read_manifest
from app.training.recipe_table import SMALL_RECIPE

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The store holding the small recipe's model, trained under the folder name ``mine``."""
    root = tmp_path_factory.mktemp("small")
    argv = ["train", "all", "--config", str(SMALL_RECIPE), "--work", str(root / "work"),
            "--out", str(root / "store" / "mine")]  # fmt: skip
    assert spp(argv) == 0
    return root / "store"


@pytest.fixture(scope="module")
def test_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shapes-test") / "data"
    assert spp(["data", "shapes", "--out", str(root), "--seed", "2", "--test", "6"]) == 0
    return root


def test_the_model_is_named_after_its_folder_and_records_its_command(trained: Path) -> None:
    manifest = read_manifest(trained / "mine")
    assert manifest.name == "mine", "the folder name wins over the recipe's name (zf5-tiny)"
    assert manifest.training["recipe"]["name"] == "zf5-tiny"
    command = manifest.training["command"]
    assert "--config app/training/configs/zf5-tiny.yaml" in command
    assert manifest.detection.multi_scales == (320, 400, 480), "the recipe's detection scales"


def test_it_evaluates_without_writing_into_the_dataset(
    trained: Path, test_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = sorted(p.relative_to(test_set) for p in test_set.rglob("*"))
    out = tmp_path / "eval"
    argv = ["eval", "--voc-root", str(test_set), "--store", str(trained), "--model", "mine",
            "--out", str(out), "--record"]  # fmt: skip
    assert spp(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert 0.0 <= summary["map"] <= 1.0 and summary["images"] == 6
    assert sorted(p.relative_to(test_set) for p in test_set.rglob("*")) == before
    assert list((out / "cache").glob("*.safetensors")), "proposals cached under --out"
    recorded = read_manifest(trained / "mine").metrics["test_single"]
    assert recorded["map"] == summary["map"] and recorded["command"].startswith("spp eval ")
    assert spp(["models", "card", "mine", "--store", str(trained)]) == 0
    card = (trained / "mine" / "MODEL_CARD.md").read_text()
    assert "# Model card: mine 0.1.0" in card and "`test_single`" in card


def test_it_serves(trained: Path, test_set: Path) -> None:
    model = load_model(trained, "mine")
    dataset = VocDataset(test_set, "test")
    image = dataset.load_rgb(dataset.ids[0])
    [result] = Detector(model, "cpu").detect(
        [image], [propose(image, model.manifest.proposals)], DetectOptions(min_confidence=0.0)
    )
    assert result.num_proposals > 0 and result.detections
    assert {d.label for d in result.detections} <= set(model.classes)
