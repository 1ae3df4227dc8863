"""A user's mistake on the command line gets one line saying what is wrong and what to do."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.cli import main
from app.model.store import ModelLoadError, load_model, save_model


def _one_line_exit(argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    message = str(exited.value)
    assert message.startswith("spp: ") and "\n" not in message, message
    return message


@pytest.fixture
def store(tmp_path: Path, tiny_model: Any) -> Path:
    save_model(tiny_model.net, tmp_path / "store" / "tiny", name="tiny", version="1",
               classes=tiny_model.classes)  # fmt: skip
    return tmp_path / "store"


def test_eval_without_model_on_a_store_lacking_the_default_names_the_models(
    store: Path, tmp_path: Path
) -> None:
    message = _one_line_exit(["eval", "--voc-root", str(tmp_path), "--store", str(store)])
    assert "zf5-shapes: no such model directory" in message
    assert "models in" in message and "tiny" in message and "--model" in message


def test_eval_on_an_empty_store_says_how_to_get_a_model(tmp_path: Path) -> None:
    message = _one_line_exit(["eval", "--voc-root", ".", "--store", str(tmp_path), "--model", "x"])
    assert "holds no model" in message and "spp train" in message


def test_eval_on_a_missing_split_names_the_available_ones(store: Path, tmp_path: Path) -> None:
    for folder in ("ImageSets/Main", "JPEGImages", "Annotations"):
        (tmp_path / "voc" / folder).mkdir(parents=True)
    (tmp_path / "voc" / "ImageSets" / "Main" / "val.txt").write_text("")
    message = _one_line_exit(["eval", "--voc-root", str(tmp_path / "voc"), "--store",
                              str(store), "--model", "tiny"])  # fmt: skip
    assert "split 'test' not found" in message and "val" in message


def _recipe(tmp_path: Path, **changes: Any) -> Path:
    recipe: dict[str, Any] = {"name": "r", "version": "1", **changes}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"pretrain": {"epochs": 2, "warmup_epochs": 3}}, "warmup_epochs (3) is part of epochs"),
        ({"pretrain": {"epochz": 2}}, "pretrain.epochz: unknown key (the keys here are: epochs"),
        ({"modle": {}}, "modle: unknown key (the keys here are: name, version"),
        ({"model": {"levels": [0]}}, "model.levels: levels must be positive integers"),
        ({"model": {"num_classes": 3}}, "model.num_classes: unknown key"),
        ({"proposals": {"max_proposals": 0}}, "proposals.max_proposals: Input should be"),
        ({"data": {"pretrain_extra": 1, "detect_extra": 2}}, "detect_extra (2) is taken"),
        ({"data": {"kind": "voc"}}, "set data.root"),
        ({"data": {"val_split": "train"}}, "calibration needs images"),
        ({"finetune": {"lr_step": 1.5}}, "finetune.lr_step: Input should be less than"),
        ({"svm": {"easy_threshold": 0.0}}, "must be below hard_threshold"),
    ],
)
def test_impossible_or_unknown_recipe_settings_are_one_line(
    tmp_path: Path, changes: dict[str, Any], expected: str
) -> None:
    path = _recipe(tmp_path, **changes)
    message = _one_line_exit(["train", "all", "--config", str(path), "--work", str(tmp_path)])
    assert message.startswith(f"spp: {path}: ") and expected in message


def test_a_missing_recipe_file_is_one_line(tmp_path: Path) -> None:
    assert "No such file" in _one_line_exit(["train", "all", "--config", str(tmp_path / "x")])


def test_training_into_a_folder_that_is_no_model_name_stops_before_training(
    tmp_path: Path,
) -> None:
    path = _recipe(tmp_path)
    message = _one_line_exit(["train", "all", "--config", str(path), "--work",
                              str(tmp_path / "w"), "--out", str(tmp_path / ".hidden")])  # fmt: skip
    assert "invalid model name '.hidden'" in message
    assert not (tmp_path / "w").exists()


def test_a_model_whose_manifest_names_another_folder_is_refused(store: Path) -> None:
    (store / "tiny").rename(store / "renamed")
    with pytest.raises(ModelLoadError, match="names the model 'tiny', but its folder is 'renamed'"):
        load_model(store, "renamed")


def test_models_lists_the_folder_names_that_load(store: Path, tiny_model: Any, capsys: Any) -> None:
    save_model(tiny_model.net, store / "other", name="not-other", version="1",
               classes=tiny_model.classes)  # fmt: skip
    assert main(["models", "--store", str(store), "--json"]) == 0
    printed = capsys.readouterr()
    listed = [m["name"] for m in json.loads(printed.out)]
    assert listed == ["tiny"]
    assert printed.err == (
        f"spp: {store / 'other'}: skipped, its manifest names the model 'not-other': rename "
        "the folder to 'not-other' or set the manifest's name to 'other'\n"
    )
    assert all(load_model(store, name).name == name for name in listed)


def test_the_train_command_records_the_config_relative_to_the_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.cli.common import REPO_ROOT
    from app.cli.train import _train_command

    recipe = REPO_ROOT / "app" / "training" / "configs" / "zf5-tiny.yaml"
    outside = tmp_path / "mine.yaml"
    monkeypatch.chdir(REPO_ROOT / "app")
    for given, recorded in [
        (str(recipe), "app/training/configs/zf5-tiny.yaml"),
        ("training/configs/zf5-tiny.yaml", "app/training/configs/zf5-tiny.yaml"),
        (str(outside), str(outside)),
    ]:
        argv = ["train", "all", "--config", given, "--work", "w x"]
        args = type("Args", (), {"config": given, "command_argv": argv})()
        assert _train_command(args) == shlex.join(["spp", "train", "all", "--config",
                                                   recorded, "--work", "w x"])  # fmt: skip


def test_a_voc_recipe_whose_folder_is_missing_is_one_line(tmp_path: Path) -> None:
    path = _recipe(tmp_path, data={"kind": "voc", "root": str(tmp_path / "nowhere")})
    message = _one_line_exit(["train", "all", "--config", str(path), "--work",
                              str(tmp_path / "w")])  # fmt: skip
    assert "nowhere" in message and "expected a Pascal VOC directory" in message
