"""`spp import spp-net-release`: synthetic release files of every format -> a store model whose
``Detector`` scores given windows as ``reference.py`` (the release's MATLAB semantics) does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from reference import ReleaseArrays
from release_check import check_detect, check_windows, windows_of_many_sizes
from release_files import make_release, write_release

from app.cli import main
from app.inference.detector import Detector
from app.model.card import render_model_card
from app.model.release import RELEASE_SCALES, import_spp_net_release
from app.model.store import load_model

#: (caffe layout, packed, double, .mat format, spm_divs, with box regression, fc widths)
CASES = {
    "v1-v73-1236-bbox": ("v1", True, False, "v73", (1, 2, 3, 6), True, (16, 12)),
    "v0-v7-6321-bbox": ("v0", True, False, "v7", (6, 3, 2, 1), True, (16, 16)),
    "current-hdf5storage-6321": (
        "current",
        True,
        False,
        "v73-hdf5storage",
        (6, 3, 2, 1),
        False,
        (16, 12),
    ),
    "v1unpacked-v7-1236": ("v1", False, False, "v7", (1, 2, 3, 6), False, (12, 12)),
    "currentdouble-v73-421-bbox": ("current", True, True, "v73", (4, 2, 1), True, (16, 12)),
}
#: Small multi-scale sets keep the reference's numpy convolutions fast; the rule is the same.
SMALL_SCALES = (160, 240, 360, 540)


def _image(seed: int, height: int, width: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _import(
    tmp_path: Path,
    arrays: ReleaseArrays,
    *,
    scales: tuple[int, ...] = SMALL_SCALES,
    name: str = "release",
    **formats: object,
) -> Detector:
    files = write_release(tmp_path / "files", arrays, **formats)  # type: ignore[arg-type]
    import_spp_net_release(
        files["spp_model"],
        name=name,
        store=tmp_path / "store",
        conv_weights=files["conv"],
        bbox_regressor=files.get("bbox_reg"),
        scales=scales,
    )
    return Detector(load_model(tmp_path / "store", name), "cpu")


@pytest.mark.parametrize("case", list(CASES))
def test_imported_release_scores_windows_as_the_reference(tmp_path: Path, case: str) -> None:
    layout, packed, double, mat_format, spm_divs, bbox, fc_dims = CASES[case]
    arrays = make_release(11, spm_divs=spm_divs, with_bbox=bbox, fc_dims=fc_dims)
    detector = _import(
        tmp_path,
        arrays,
        caffe_layout=layout,
        packed=packed,
        double=double,
        mat_format=mat_format,
    )
    image = _image(1, 48, 64)
    windows = windows_of_many_sizes(48, 64, 24, seed=2)
    multi = check_windows(detector, arrays, image, windows, "multi")
    assert len(set(multi.scale_index.tolist())) >= 3, "the windows should spread over scales"
    check_windows(detector, arrays, image, windows[:8], "single")
    check_detect(detector, arrays, image, windows, "multi")


def test_release_scales_on_a_larger_image(tmp_path: Path) -> None:
    arrays = make_release(12, spm_divs=(6, 3, 2, 1))
    detector = _import(tmp_path, arrays, scales=RELEASE_SCALES)
    image = _image(3, 90, 120)
    windows = windows_of_many_sizes(90, 120, 30, seed=4)
    ref = check_windows(detector, arrays, image, windows, "multi")
    assert set(ref.scale_index.tolist()) == set(range(5)), "every release scale is chosen"
    check_detect(detector, arrays, image, windows, "single")


def test_manifest_carries_each_difference_from_spec(tmp_path: Path) -> None:
    arrays = make_release(13, spm_divs=(6, 3, 2, 1))
    detector = _import(tmp_path, arrays)
    manifest = detector.model.manifest
    model, det, win = manifest.model, manifest.detection, manifest.windows
    assert model.conv_pads == (1, 0, 1, 1, 1) and model.pool_pad == 0 and model.pool_ceil_mode
    assert model.channels == (4, 4, 4, 4, 4) and model.levels == (1, 2, 3, 6)
    assert (model.fc_dim, model.fc7_dim, model.classifier) == (16, 12, False)
    assert manifest.preprocess.channel_order == "BGR"
    assert manifest.preprocess.pixel_mean == (128.0, 128.0, 128.0)
    assert det.multi_scales == SMALL_SCALES and det.single_scale == 688
    assert (det.nms_iou, det.nms_extent, det.min_score, det.calibration) == (
        0.3,
        "inclusive",
        None,
        "none",
    )
    assert det.default_scales == "multi" and det.nms_before_regression
    assert manifest.proposals.min_size == 20.0
    assert (win.scale_choice, win.target_side, win.area_extent) == (
        "expected_scale",
        13 * 16,
        "inclusive",
    )
    assert (win.box_scaling, win.projection, win.stride, win.offset0, win.offset) == (
        "align_corners",
        "offset",
        16.0,
        18.0,
        9.5,
    )
    assert manifest.classes == arrays.classes and manifest.weights_dtype == "float32"
    assert not hasattr(detector.net, "cls_head")
    with pytest.raises(ValueError, match="no whole-image classification head"):
        detector.classify([_image(0, 40, 40)])
    imported = manifest.training["imported"]
    assert set(imported["files"]) == {"model_mat", "conv_weights", "bbox_regressor"}
    card = render_model_card(manifest)
    assert "sigmoid(score)" in card and "no SVM score threshold" in card
    assert "offset0 18" in card


def test_half_weights_and_the_default_trunk_path(tmp_path: Path) -> None:
    """``--half`` stores float16; without ``conv_weights`` the data package's layout is used."""
    arrays = make_release(14, with_bbox=False)
    files = write_release(tmp_path / "pkg" / "data" / "spp_model" / "VOC2007", arrays)
    trunk = tmp_path / "pkg" / "data" / "cnn_model" / "Zeiler_conv5" / "Zeiler_conv5"
    trunk.parent.mkdir(parents=True)
    files["conv"].rename(trunk)
    manifest = import_spp_net_release(
        files["spp_model"], name="half", store=tmp_path / "store", dtype="float16"
    )
    assert manifest.weights_dtype == "float16"
    assert manifest.training["imported"]["files"]["conv_weights"]["path"] == str(
        files["spp_model"].parent / ".." / ".." / "cnn_model" / "Zeiler_conv5" / "Zeiler_conv5"
    )
    half = Detector(load_model(tmp_path / "store", "half"), "cpu")
    image = _image(5, 48, 64)
    windows = windows_of_many_sizes(48, 64, 6, seed=6)
    with torch.inference_mode():
        pooled, _ = half.pooled_windows(image, torch.from_numpy(windows), (240,))
        scores = half.net.svm(half.net.det_head(pooled)).numpy()
    from release_check import reference_for

    ref = reference_for(half, arrays, image, windows, (240,))
    np.testing.assert_allclose(scores, ref.scores, rtol=2e-2, atol=2e-2)  # float16 weights


def test_cli_imports_into_a_store_that_load_model_serves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arrays = make_release(15)
    files = write_release(tmp_path / "files", arrays, mat_format="v7")
    store = tmp_path / "store"
    argv = [
        "import",
        "spp-net-release",
        "--model-mat",
        str(files["spp_model"]),
        "--conv-weights",
        str(files["conv"]),
        "--bbox-regressor",
        str(files["bbox_reg"]),
        "--name",
        "voc2007",
        "--store",
        str(store),
        "--scales",
        "160,240,360",
    ]
    assert main(argv) == 0
    assert "MODEL_NAME=voc2007" in capsys.readouterr().out
    assert sorted(p.name for p in store.iterdir()) == ["voc2007"]
    assert sorted(p.name for p in (store / "voc2007").iterdir()) == [
        "manifest.json",
        "weights.safetensors",
    ]
    raw = json.loads((store / "voc2007" / "manifest.json").read_text())
    assert raw["detection"]["multi_scales"] == [160, 240, 360]
    assert raw["training"]["command"].startswith("spp import spp-net-release --model-mat ")
    detector = Detector(load_model(store, "voc2007"), "cpu")
    image = _image(7, 48, 64)
    check_windows(detector, arrays, image, windows_of_many_sizes(48, 64, 10, seed=8), "multi")
    with pytest.raises(SystemExit, match="already exists"):
        main(argv)


def test_cli_rejects_bad_scales(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["import", "spp-net-release", "--model-mat", "x", "--name", "n", "--scales", "480,a"]
    with pytest.raises(SystemExit):
        main(argv)
    assert "comma-separated integers" in capsys.readouterr().err
