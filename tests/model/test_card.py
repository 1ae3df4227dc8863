"""Model cards: rendered from the manifest, committed next to it, checked by the CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.cli import main
from app.model.card import CARD_FILE, render_model_card
from app.model.config import ModelConfig
from app.model.store import MANIFEST_FILE, Manifest, read_manifest

MODEL_STORE = Path(__file__).resolve().parents[2] / "model_store"
SHIPPED = sorted(p.parent for p in MODEL_STORE.glob(f"*/{MANIFEST_FILE}"))


def toy_manifest(**fields: object) -> Manifest:
    """Two classes, one detection and one classification metric, written by hand."""
    return Manifest(
        name="toy",
        version="0.3.1",
        description="a hand-built manifest",
        classes=["kite", "lamp"],
        model=ModelConfig(num_classes=2, width=0.5, fc_dim=128),
        weights_sha256="ab" * 32,
        **fields,  # type: ignore[arg-type]
    )


def test_shipped_models_exist() -> None:
    assert SHIPPED, f"no model under {MODEL_STORE}"


@pytest.mark.parametrize("model_dir", SHIPPED, ids=[p.name for p in SHIPPED])
def test_committed_card_equals_the_generated_one(model_dir: Path) -> None:
    card = model_dir / CARD_FILE
    assert card.is_file(), f"missing {card}: run `spp models card {model_dir.name}`"
    expected = render_model_card(read_manifest(model_dir))
    assert card.read_text(encoding="utf-8") == expected, (
        f"{card} is out of date: run `spp models card {model_dir.name}`"
    )


def test_card_holds_classes_architecture_and_metrics() -> None:
    manifest = toy_manifest(
        metrics={
            "test_single": {
                "map": 0.625,
                "ap": {"kite": 0.5, "lamp": 0.75},
                "proposal_recall": {"0.5": 0.875, "0.7": 0.25},
                "images": 12,
                "scales": "single",
                "command": "spp eval --voc-root toy-data --split test --record",
            },
            "test_classify": {
                "images": 4,
                "accuracy": 0.75,
                "per_class": {"kite": 1.0, "lamp": 0.5},
                "by_share": {"0.0-0.1": {"images": 4, "accuracy": 0.75}},
                "command": "spp eval --voc-root toy-data --task classify --record",
            },
        },
        training={"command": "spp train all --config toy.yaml", "seeds": {"data": 7}},
    )
    card = render_model_card(manifest)
    assert card.startswith("# Model card: toy 0.3.1\n")
    assert "| 0 | kite |" in card and "| 1 | lamp |" in card
    # width 0.5 of ZF-5's 96, 256, 384, 384, 256 channels; 128 * 50 bins pooled.
    assert "48, 128, 192, 192, 128 channels" in card
    assert "6400-d vector" in card
    assert "| `test_single` | single | 12 | **0.625** | 0.875 | 0.250 |" in card
    assert "| kite | 0.500 |" in card and "| lamp | 0.750 |" in card
    assert "`spp eval --voc-root toy-data --split test --record`" in card
    assert "| `test_classify` | 4 | **0.750** | 0.750 | – | – | – |" in card
    assert "`spp eval --voc-root toy-data --task classify --record`" in card
    assert "spp train all --config toy.yaml" in card
    assert "data 7" in card
    assert card.endswith("\n") and not card.endswith("\n\n")


def test_card_without_metrics_or_provenance_says_so() -> None:
    card = render_model_card(toy_manifest())
    assert "The manifest records no training provenance." in card
    assert "None recorded." in card
    assert "generated shapes" not in card  # no shapes provenance, no shapes-specific text


def test_card_is_a_pure_function_of_the_manifest() -> None:
    metrics = {"val_multi": {"map": 0.5, "ap": {"kite": 0.5, "lamp": 0.5}, "command": "x"}}
    assert render_model_card(toy_manifest(metrics=metrics)) == render_model_card(
        toy_manifest(metrics=metrics)
    )
    changed = {"val_multi": {**metrics["val_multi"], "map": 0.25}}
    assert render_model_card(toy_manifest(metrics=changed)) != render_model_card(
        toy_manifest(metrics=metrics)
    )


@pytest.fixture
def store_copy(tmp_path: Path) -> Path:
    """The shipped store's manifests and cards (the weights are not needed for a card)."""
    for model_dir in SHIPPED:
        target = tmp_path / model_dir.name
        target.mkdir()
        for name in (MANIFEST_FILE, CARD_FILE):
            shutil.copy(model_dir / name, target / name)
    return tmp_path


def test_cli_check_passes_on_the_committed_card_and_fails_on_a_modified_one(
    store_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = SHIPPED[0].name
    assert main(["models", "card", name, "--store", str(store_copy), "--check"]) == 0
    card = store_copy / name / CARD_FILE
    card.write_text(card.read_text(encoding="utf-8").replace("0.", "0,", 1), encoding="utf-8")
    assert main(["models", "card", name, "--store", str(store_copy), "--check"]) == 1
    assert "out of date" in capsys.readouterr().err
    card.unlink()
    assert main(["models", "--store", str(store_copy), "card", name, "--check"]) == 1


def test_cli_writes_the_card_then_check_passes(store_copy: Path) -> None:
    name = SHIPPED[0].name
    card = store_copy / name / CARD_FILE
    card.unlink()
    assert main(["models", "card", name, "--store", str(store_copy)]) == 0
    assert card.read_text(encoding="utf-8") == render_model_card(read_manifest(store_copy / name))
    # --store given before `card` is honoured too.
    assert main(["models", "--store", str(store_copy), "card", name, "--check"]) == 0


def test_cli_card_of_an_unknown_model_fails(store_copy: Path) -> None:
    with pytest.raises(SystemExit, match="no such file"):
        main(["models", "card", "nope", "--store", str(store_copy)])


def _voc_trained(**training: object) -> Manifest:
    """A model trained on the train split of a VOC folder, evaluated on its test split, with the
    provenance the pipeline records (generator fields at their defaults in the recipe)."""
    recipe = {
        "name": "toy",
        "data": {"kind": "voc", "root": "/data/mine", "train_split": "train",
                 "val_split": "val", "seed": 1, "train": 400, "val": 100, "pretrain_extra": 5,
                 "detect_extra": 0},
        "pretrain": {"epochs": 3},
    }  # fmt: skip
    provenance = {
        "command": "spp train all --config /abs/mine.yaml",
        "recipe": recipe,
        "seeds": {"data": 1, "pretrain_data": 1001, "pretrain": 0},
        "data": {"root": "/data/mine", "annotations_sha256": "cd" * 32},
    }
    metric = {
        "map": 0.5,
        "ap": {"kite": 0.5, "lamp": 0.5},
        "scales": "single",
        "command": "spp eval --voc-root /data/mine --split test --record",
    }
    return toy_manifest(training={**provenance, **training}, metrics={"test_single": metric})


def test_card_of_a_voc_trained_model_leaves_out_the_generator() -> None:
    card = render_model_card(_voc_trained())
    assert "Read from the VOC-layout dataset at `/data/mine`." in card
    assert "train: 400" not in card and "pretrain_extra" not in card
    assert "data 1" not in card and "pretrain_data" not in card and "pretrain 0" in card
    assert "more generated images" not in card
    assert "root: /data/mine, train_split: train, val_split: val" in card


def test_card_of_a_voc_trained_model_does_not_call_its_own_folder_unseen() -> None:
    card = render_model_card(_voc_trained())
    assert "did not train on;" not in card
    assert "trained on the `train` split of `/data/mine`" in card
    shapes = render_model_card(toy_manifest(training={"recipe": {"data": {"kind": "shapes"}}},
                                            metrics=_voc_trained().metrics))  # fmt: skip
    assert "is a dataset the model did not train on" in shapes
