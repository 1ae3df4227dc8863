"""What the manifest records about a training run."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from app.training.provenance import annotations_sha256, provenance, training_seeds
from app.training.recipe import TrainConfig
from app.training.workdir import WorkDir


def test_the_annotation_hash_covers_every_xml_in_name_order(tmp_path: Path) -> None:
    annotations = tmp_path / "Annotations"
    annotations.mkdir()
    for name, text in (("b.xml", b"<b/>"), ("a.xml", b"<a/>"), ("notes.txt", b"skip")):
        (annotations / name).write_bytes(text)
    assert annotations_sha256(tmp_path) == hashlib.sha256(b"<a/><b/>").hexdigest()
    (annotations / "b.xml").write_bytes(b"<b>changed</b>")
    assert annotations_sha256(tmp_path) == hashlib.sha256(b"<a/><b>changed</b>").hexdigest()


def test_the_record_holds_the_command_recipe_data_and_seeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command is what the caller passes, never the process's command line."""
    config = TrainConfig.model_validate(
        {"name": "x", "version": "1", "data": {"seed": 7}, "svm": {"seed": 3}}
    )
    work = WorkDir(tmp_path)
    work.data_summary.write_text(json.dumps({"sha256": "abc", "files": ["a.jpg"]}))
    monkeypatch.setattr("sys.argv", ["/usr/bin/spp", "train", "all", "--work", "my dir"])
    record = provenance(config, work, "spp train all --work 'my dir'")
    assert record["command"] == "spp train all --work 'my dir'"
    assert provenance(config, work)["command"] == "", "sys.argv is not read"
    assert record["recipe"] == config.to_json()
    assert record["data"] == {"sha256": "abc"}, "the file list stays out"
    assert record["seeds"] == training_seeds(config)
    assert training_seeds(config) == {
        "data": 7,
        "pretrain_data": 1007,
        "pretrain": 0,
        "finetune": 0,
        "svm": 3,
    }
    assert record["torch"] == torch.__version__
    assert record["finished"].endswith("Z")


def test_a_voc_recipe_records_no_generator_seeds() -> None:
    config = TrainConfig.model_validate(
        {"name": "x", "version": "1", "data": {"kind": "voc", "root": "/d"}, "svm": {"seed": 3}}
    )
    assert training_seeds(config) == {"pretrain": 0, "finetune": 0, "svm": 3}
