"""The ``spp`` CLI's model store (``--store``, else ``MODEL_STORE``, the service's setting),
and ``spp detect --proposals FILE.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from app.cli import build_parser, main
from app.model.store import save_model

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "argv",
    [["detect", "x.png"], ["classify", "x.png"], ["models"], ["eval", "--voc-root", "v"]],
)
def test_store_defaults_to_model_store_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, argv: list[str]
) -> None:
    monkeypatch.setenv("MODEL_STORE", str(tmp_path))
    assert build_parser().parse_args(argv).store == str(tmp_path)
    explicit = build_parser().parse_args([*argv, "--store", "elsewhere"])
    assert explicit.store == "elsewhere"
    monkeypatch.delenv("MODEL_STORE")
    assert build_parser().parse_args(argv).store == str(REPO_ROOT / "model_store")


def test_models_lists_the_store_named_by_model_store(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_model: Any, capsys: Any
) -> None:
    save_model(tiny_model.net, tmp_path / "env-model", name="env-model", version="2",
               classes=tiny_model.classes)  # fmt: skip
    monkeypatch.setenv("MODEL_STORE", str(tmp_path))
    assert main(["models", "--json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert (listed["name"], listed["version"]) == ("env-model", "2")


@pytest.fixture
def stored_tiny(tmp_path: Path, tiny_model: Any) -> Path:
    """The tiny model in a store under ``tmp_path`` (float32 weights, its small scales)."""
    manifest = tiny_model.manifest
    save_model(tiny_model.net, tmp_path / "store" / "tiny", name="tiny", version="1",
               classes=tiny_model.classes, dtype="float32", detection=manifest.detection,
               windows=manifest.windows, proposals=manifest.proposals)  # fmt: skip
    return tmp_path / "store"


def _scene(path: Path) -> np.ndarray:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 120, (72, 96, 3), dtype=np.uint8)
    image[20:50, 30:70] = 240
    Image.fromarray(image).save(path)
    return image


def test_detect_with_proposals_file_uses_those_windows(
    tmp_path: Path, stored_tiny: Path, capsys: Any
) -> None:
    from app.inference.detector import DetectOptions, Detector
    from app.model.store import load_model

    image = _scene(tmp_path / "x.png")
    boxes = tmp_path / "boxes.json"
    boxes.write_text("[[0, 0, 40, 30], [20, 10, 95, 71], [-10, 5, 200, 60]]")
    argv = ["detect", str(tmp_path / "x.png"), "--proposals", str(boxes)]
    assert main([*argv, "--store", str(stored_tiny), "--model", "tiny", "--json",
                 "--min-confidence", "0"]) == 0  # fmt: skip
    [result] = json.loads(capsys.readouterr().out).values()
    assert result["num_proposals"] == 3
    clipped = np.array([[0, 0, 40, 30], [20, 10, 95, 71], [0, 5, 95, 60]], np.float32)
    detector = Detector(load_model(stored_tiny, "tiny"), "cpu")
    [expected] = detector.detect([image], [clipped], DetectOptions(min_confidence=0.0))
    assert [d["class_id"] for d in result["detections"]] == [
        d.class_id for d in expected.detections
    ]
    assert [d["confidence"] for d in result["detections"]] == pytest.approx(
        [d.confidence for d in expected.detections]
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[0, 0, 40", "not valid JSON"),
        ("[[0, 0, 40, 30, 1]]", "proposals[0]: expected [x1, y1, x2, y2], 4 finite numbers"),
        ("[" + ",".join(["[0, 0, 4, 3]"] * 201) + "]", "at most 200 boxes allowed"),
        ("[[100, 0, 140, 30]]", "is empty after clipping to the 96x72 image"),
    ],
)
def test_detect_with_bad_proposals_file_exits_with_the_reason(
    tmp_path: Path, stored_tiny: Path, text: str, message: str
) -> None:
    _scene(tmp_path / "x.png")
    boxes = tmp_path / "boxes.json"
    boxes.write_text(text)
    argv = ["detect", str(tmp_path / "x.png"), "--proposals", str(boxes)]
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--store", str(stored_tiny), "--model", "tiny"])
    assert str(exited.value).startswith(f"spp: {boxes}: ")
    assert message in str(exited.value)


def test_proposals_file_needs_exactly_one_image(tmp_path: Path, stored_tiny: Path) -> None:
    _scene(tmp_path / "x.png")
    (tmp_path / "boxes.json").write_text("[]")
    argv = ["detect", str(tmp_path / "x.png"), str(tmp_path / "x.png"),
            "--proposals", str(tmp_path / "boxes.json"), "--store", str(stored_tiny),
            "--model", "tiny"]  # fmt: skip
    with pytest.raises(SystemExit, match="--proposals needs exactly one image, got 2"):
        main(argv)


def test_data_shapes_preset_realistic_records_its_knobs(tmp_path: Path, capsys: Any) -> None:
    from app.data.shapes import PRESETS, GeneratorKnobs

    out = tmp_path / "real"
    argv = ["data", "shapes", "--out", str(out), "--seed", "4", "--test", "2"]
    assert main([*argv, "--preset", "realistic"]) == 0
    written = json.loads((out / "shapes.json").read_text())
    printed = capsys.readouterr().out
    assert printed.splitlines() == [
        f"wrote {out} (seed 4, data sha256 {written['sha256']})",
        f"  test: 2 images, {sum(written['objects']['test'].values())} objects",
        f"classes: {', '.join(written['classes'])}; details in {out / 'shapes.json'}",
    ], "a short summary, not the whole shapes.json"
    assert GeneratorKnobs.model_validate(written["knobs"]) == PRESETS["realistic"]
    assert written["images"] == {"train": 0, "val": 0, "test": 2} and "background_split" in written
    assert build_parser().parse_args(argv).preset == "v1"
    with pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--preset", "photoreal"])
    for name in PRESETS:  # every preset is a choice
        assert build_parser().parse_args([*argv, "--preset", name]).preset == name
