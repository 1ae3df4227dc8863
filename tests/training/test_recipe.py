"""The recipe schema: YAML in, one frozen model out, unknown keys refused, and the JSON form
that work directories and manifests record unchanged by the move to pydantic."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from app.training.recipe import PretrainConfig, RecipeError, TrainConfig, load_recipe

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "app" / "training" / "configs" / "zf5-shapes.yaml"
#: The JSON form of two recipes as the dataclass schema before the pydantic one produced it
#: (``dataclasses.asdict`` through a JSON round trip), computed once by running that code
#: (``git show`` of app/training/pipeline.py before issue 15) and kept here as data.
BEFORE = json.loads((Path(__file__).parent / "recipes_before_refactor.json").read_text())


def test_the_shipped_recipe_has_the_json_form_it_had_before() -> None:
    assert load_recipe(SHIPPED).to_json() == BEFORE["app/training/configs/zf5-shapes.yaml"]
    assert TrainConfig.from_yaml(SHIPPED) == load_recipe(SHIPPED)


def test_the_defaults_have_the_json_form_they_had_before() -> None:
    before = BEFORE["name: x, version: 1 (every other field at its default)"]
    assert TrainConfig(name="x", version="1").to_json() == before


def test_the_json_form_reads_back_to_the_same_recipe(tmp_path: Path) -> None:
    config = load_recipe(SHIPPED)
    assert TrainConfig.model_validate(config.to_json()) == config
    path = tmp_path / "again.yaml"
    path.write_text(yaml.safe_dump(config.to_json()))
    assert load_recipe(path) == config
    assert config.pretrain.sizes == (224, 180) and config.pretrain.context == (0.3, 0.95)


def _shipped() -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load(SHIPPED.read_text())
    return raw


@pytest.mark.parametrize(
    ("section", "key"),
    [
        (None, "bbox_alfa"),
        ("data", "trian"),
        ("pretrain", "epochz"),
        ("finetune", "iters"),
        ("svm", "c"),
    ],
)
def test_an_unknown_key_is_an_error_naming_it_and_the_file(
    tmp_path: Path, section: str | None, key: str
) -> None:
    raw = _shipped()
    if section is None:
        raw[key] = 1
    else:
        raw[section] = {**raw[section], key: 1}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(RecipeError, match="unknown key") as error:
        load_recipe(path)
    assert key in str(error.value) and str(path) in str(error.value)
    assert "\n" not in str(error.value), "one line"


def test_a_value_of_the_wrong_type_is_an_error(tmp_path: Path) -> None:
    raw = _shipped()
    raw["pretrain"] = {**raw["pretrain"], "epochs": "many"}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match=r"pretrain\.epochs"):
        load_recipe(path)


def test_a_file_that_is_not_a_mapping_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- name\n- version\n")
    with pytest.raises(ValueError, match="expected a mapping"):
        load_recipe(path)


def test_name_and_version_are_required(tmp_path: Path) -> None:
    path = tmp_path / "nameless.yaml"
    path.write_text(yaml.safe_dump({"version": "1"}))
    with pytest.raises(ValueError, match="name"):
        load_recipe(path)


def test_choices_are_checked() -> None:
    assert PretrainConfig(background_source="proposals").background_source == "proposals"
    with pytest.raises(ValueError, match="background_source"):
        PretrainConfig(background_source="clutter")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kind"):
        TrainConfig.model_validate({"name": "x", "version": "1", "data": {"kind": "coco"}})


def test_a_recipe_is_frozen() -> None:
    config = TrainConfig(name="x", version="1")
    with pytest.raises(ValidationError):
        config.pretrain.epochs = 3  # type: ignore[misc]
    with pytest.raises(ValidationError):
        config.bbox_alpha = 1.0  # type: ignore[misc]


def test_total_epochs_adds_the_finishing_phase() -> None:
    assert PretrainConfig(epochs=5, finish_epochs=3).total_epochs == 8


def test_fields_added_after_v1_appear_in_the_json_form_only_when_used() -> None:
    plain = TrainConfig(name="x", version="1").to_json()
    assert "conv_finetune" not in plain and "init_from" not in plain["pretrain"]
    used = TrainConfig.model_validate(
        {
            "name": "x",
            "version": "2",
            "pretrain": {"init_from": "model_store/zf5-shapes", "epochs": 0},
            "conv_finetune": {"iterations": 5},
        }
    )
    data = used.to_json()
    assert data["pretrain"]["init_from"] == "model_store/zf5-shapes"
    assert data["conv_finetune"]["iterations"] == 5
    assert TrainConfig.model_validate(data) == used


def test_a_warm_start_may_not_also_train_stage_1() -> None:
    with pytest.raises(ValueError, match="init_from replaces pre-training"):
        TrainConfig.model_validate(
            {"name": "x", "version": "2", "pretrain": {"init_from": "m", "epochs": 3}}
        )


def test_the_v2_recipe_loads() -> None:
    config = load_recipe(SHIPPED.parent / "zf5-shapes-v2.yaml")
    assert config.conv_finetune.iterations > 0 and config.data.knobs.background_split
    assert config.pretrain.init_from is not None and config.pretrain.total_epochs == 0


@pytest.mark.parametrize("path", sorted(SHIPPED.parent.glob("*.yaml")), ids=lambda p: p.name)
def test_every_recipe_in_the_configs_folder_loads(path: Path) -> None:
    config = load_recipe(path)
    assert config.name == ("zf5-tiny" if path.name == "zf5-tiny.yaml" else "zf5-shapes")
    if config.data.extra_knobs is not None:  # the mixed v2 trials: realistic splits, v1 extras
        assert config.data.knobs.background_split and config.data.knobs_of_extra.is_default


def test_the_model_proposals_and_detection_sections_are_typed_and_kept_as_written() -> None:
    from app.model.config import DetectionConfig, ModelConfig, ProposalConfig

    config = TrainConfig.model_validate(
        {"name": "x", "version": "1", "model": {"width": 0.5}, "detection": {"single_scale": 400}}
    )
    assert config.model.to_config(num_classes=3, cls_background=True) == ModelConfig(
        num_classes=3, cls_background=True, width=0.5
    )
    assert config.proposals.to_config() == ProposalConfig()
    assert config.detection.to_config() == DetectionConfig(single_scale=400)
    data = config.to_json()
    assert (data["model"], data["proposals"], data["detection"]) == (
        {"width": 0.5}, {}, {"single_scale": 400},
    )  # fmt: skip
    assert "detection" not in TrainConfig.model_validate({"name": "x", "version": "1"}).to_json()
    model_fields = set(ModelConfig.__pydantic_fields__) - {"num_classes", "cls_background"}
    assert set(type(config.model).model_fields) == model_fields, "the schema is ModelConfig's"
