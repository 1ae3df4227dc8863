"""The work directory: its layout, the stale-output guard and the event log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.training.workdir import (
    EXTRA,
    RECIPE_FILE,
    STAGE_OUTPUTS,
    StaleWorkError,
    WorkDir,
    check_work_recipe,
)


def test_recipe_check_lists_only_the_outputs_a_section_feeds(tmp_path: Path) -> None:
    recipe = {"svm": {"C": 0.01}, "finetune": {"iterations": 10}, "data": {"seed": 1}}
    check_work_recipe(tmp_path, recipe)
    (tmp_path / "detect").mkdir()
    (tmp_path / "detect" / "svm.safetensors").write_bytes(b"")
    (tmp_path / "pretrain").mkdir()
    with pytest.raises(StaleWorkError) as error:
        check_work_recipe(tmp_path, {**recipe, "svm": {"C": 0.1}})
    assert "svm.safetensors" in str(error.value) and "pretrain" not in str(error.value)
    (tmp_path / "detect" / "svm.safetensors").unlink()
    check_work_recipe(tmp_path, {**recipe, "svm": {"C": 0.1}})  # deleted: the run may go on
    recorded = json.loads((tmp_path / RECIPE_FILE).read_text())
    assert recorded["svm"] == {"C": 0.1}
    with pytest.raises(StaleWorkError, match="pretrain"):
        check_work_recipe(tmp_path, {**recipe, "svm": {"C": 0.1}, "data": {"seed": 2}})


def test_more_detection_images_make_only_stages_3_to_5_stale(tmp_path: Path) -> None:
    """``data.detect_extra`` is compared on its own: the data, stage 1 and the caches stay."""
    recipe = {"data": {"seed": 1, "detect_extra": 0}}
    check_work_recipe(tmp_path, recipe)
    for name in ("data", "pretrain", "conv5", "detect"):
        (tmp_path / name).mkdir()
    with pytest.raises(StaleWorkError) as error:
        check_work_recipe(tmp_path, {"data": {"seed": 1, "detect_extra": 800}})
    assert "detect_extra" in str(error.value)
    stale = str(error.value).split("delete them to redo those stages: ")[1]
    assert stale == str(tmp_path / "detect")
    (tmp_path / "detect").rmdir()
    check_work_recipe(tmp_path, {"data": {"seed": 1, "detect_extra": 800}})
    # A recipe recorded before the field existed differs from one that leaves it at 0 only
    # in that field.
    (tmp_path / RECIPE_FILE).write_text(json.dumps({"data": {"seed": 1}}))
    (tmp_path / "detect").mkdir()
    with pytest.raises(StaleWorkError, match=r"data\.detect_extra"):
        check_work_recipe(tmp_path, {"data": {"seed": 1, "detect_extra": 800}})


def test_a_field_recorded_before_it_existed_counts_as_its_default(tmp_path: Path) -> None:
    """A work directory made before ``finetune.far_bg_per_image`` existed resumes with the
    field at its default (0, the paper's windows) and is stale with any other value."""
    (tmp_path / RECIPE_FILE).write_text(json.dumps({"finetune": {"iterations": 10}}))
    (tmp_path / "detect").mkdir()
    check_work_recipe(tmp_path, {"finetune": {"iterations": 10, "far_bg_per_image": 0}})
    (tmp_path / RECIPE_FILE).write_text(json.dumps({"finetune": {"iterations": 10}}))
    with pytest.raises(StaleWorkError, match="finetune"):
        check_work_recipe(tmp_path, {"finetune": {"iterations": 10, "far_bg_per_image": 64}})


def test_the_guard_names_outputs_of_the_layout(tmp_path: Path) -> None:
    """Every output the guard may ask to delete is a path the stages write."""
    work = WorkDir(tmp_path)
    written = {
        work.data,
        work.data_summary,
        work.pretrain_data,
        work.proposals(),
        work.pretrain_checkpoint.parent,
        work.conv_finetune,
        work.conv5(),
        work.detect,
        work.svm,
    }
    assert {tmp_path / o for outputs in STAGE_OUTPUTS.values() for o in outputs} == written


def test_layout_of_a_work_directory(tmp_path: Path) -> None:
    work = WorkDir(tmp_path)
    assert work.proposals(EXTRA) == tmp_path / "proposals" / "extra"
    assert work.conv5(EXTRA) == tmp_path / "conv5" / "extra"
    assert work.proposals() == tmp_path / "proposals"
    for path in (work.finetune_samples, work.det_head, work.svm):
        assert path.parent == work.detect
    assert work.pretrain_checkpoint == tmp_path / "pretrain" / "checkpoint"


def test_the_event_log_appends_one_json_line_per_event(tmp_path: Path) -> None:
    work = WorkDir(tmp_path)
    work.log_event("first", loss=0.5, history=[{"epoch": 1}])
    work.log_event("second")
    records = [json.loads(line) for line in work.log_file.read_text().splitlines()]
    assert [r["event"] for r in records] == ["first", "second"]
    assert records[0]["loss"] == 0.5 and records[0]["history"] == [{"epoch": 1}]
    assert all(len(r["time"]) == len("2026-01-01T00:00:00") for r in records)


def test_a_new_work_directory_records_the_recipe(tmp_path: Path) -> None:
    work = tmp_path / "new" / "work"
    recipe = {"name": "x", "svm": {"C": 0.5}}
    check_work_recipe(work, recipe)
    assert json.loads((work / RECIPE_FILE).read_text()) == recipe


def test_new_detection_scales_make_the_conv5_cache_and_the_head_stale(tmp_path: Path) -> None:
    check_work_recipe(tmp_path, {"model": {"width": 0.25}})
    for output in ("pretrain", "proposals", "conv5", "detect"):
        (tmp_path / output).mkdir()
    # an explicit default is the same recipe as the omitted section
    check_work_recipe(tmp_path, {"model": {"width": 0.25}, "detection": {"single_scale": 688}})
    with pytest.raises(StaleWorkError) as error:
        check_work_recipe(tmp_path, {"model": {"width": 0.25}, "detection": {"single_scale": 400}})
    stale = str(error.value).partition("delete them to redo those stages: ")[2]
    assert sorted(Path(p).name for p in stale.split(", ")) == ["conv5", "detect"]


def test_resuming_with_the_stage_directories_of_before_works(tmp_path: Path) -> None:
    """The work directory keeps its folder names (pretrain/, conv5/, detect/, ...), so a work
    directory made before the stages were renamed in the code resumes as it is."""
    work = WorkDir(tmp_path)
    assert (work.pretrain_checkpoint.parent.name, work.conv5().name, work.detect.name) == (
        "pretrain",
        "conv5",
        "detect",
    )
    assert work.conv_finetune.name == "conv-finetune" and work.svm.name == "svm.safetensors"
