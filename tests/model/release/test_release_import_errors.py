"""A bad release file gives a clear error and the import writes nothing."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from reference import ReleaseArrays
from release_files import bbox_reg_value, make_release, spp_model_value, write_caffemodel, write_mat

from app.cli import main
from app.model.release import ReleaseFormatError, import_spp_net_release
from app.model.release.matlab import MatStruct


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _without(struct: MatStruct, field: str) -> MatStruct:
    element = {k: v for k, v in struct.elements[0].items() if k != field}
    return MatStruct(shape=(1, 1), fields=tuple(element), elements=(element,))


def _write(
    directory: Path,
    arrays: ReleaseArrays,
    *,
    mat_format: str = "v7",
    spp_model: object | None = None,
    variable: str = "spp_model",
    bbox: ReleaseArrays | None = None,
) -> dict[str, Path]:
    """The release files; ``bbox`` gives the arrays the box regressor is written from."""
    directory.mkdir(parents=True, exist_ok=True)
    value = spp_model_value(arrays) if spp_model is None else spp_model
    files = {
        "conv": write_caffemodel(directory / "Zeiler_conv5", arrays.conv),
        "spp_model": write_mat(directory / "spp_model.mat", mat_format, {variable: value}),
    }
    source = bbox if bbox is not None else arrays
    if source.bbox is not None:
        files["bbox_reg"] = write_mat(
            directory / "bbox.mat", mat_format, {"bbox_reg": bbox_reg_value(source)}
        )
    return files


def _truncated_conv(tmp: Path) -> dict[str, Path]:
    files = _write(tmp, make_release(0))
    _truncate(files["conv"])
    return files


def _mat_as_conv(tmp: Path) -> dict[str, Path]:
    files = _write(tmp, make_release(0), mat_format="v73")
    files["conv"] = files["spp_model"]
    return files


def _truncated_mat(fmt: str) -> Callable[[Path], dict[str, Path]]:
    def make(tmp: Path) -> dict[str, Path]:
        files = _write(tmp, make_release(0), mat_format=fmt)
        _truncate(files["spp_model"])
        return files

    return make


def _other_variable(tmp: Path) -> dict[str, Path]:
    return _write(tmp, make_release(0), variable="model")


def _no_detectors(tmp: Path) -> dict[str, Path]:
    arrays = make_release(0)
    return _write(tmp, arrays, spp_model=_without(spp_model_value(arrays), "detectors"))


def _wider_conv5(tmp: Path) -> dict[str, Path]:
    files = _write(tmp, make_release(0))
    write_caffemodel(files["conv"], make_release(0, channels=(4, 4, 4, 4, 8)).conv)
    return files


def _regressor_of_two_classes(tmp: Path) -> dict[str, Path]:
    return _write(tmp, make_release(0), bbox=make_release(1, num_classes=2))


def _regressor_of_another_pyramid(tmp: Path) -> dict[str, Path]:
    return _write(tmp, make_release(0), bbox=make_release(1, spm_divs=(1, 2, 3)))


def _binarized_regressor(tmp: Path) -> dict[str, Path]:
    arrays = make_release(0)
    files = _write(tmp, arrays)
    value = bbox_reg_value(arrays)
    opts = value.elements[0]["training_opts"]
    opts = dataclasses.replace(
        opts, elements=({**opts.elements[0], "binarize": np.array([[True]])},)
    )
    value = dataclasses.replace(value, elements=({**value.elements[0], "training_opts": opts},))
    write_mat(files["bbox_reg"], "v7", {"bbox_reg": value})
    return files


BREAKERS: dict[str, tuple[Callable[[Path], dict[str, Path]], str]] = {
    "truncated-caffemodel": (_truncated_conv, r"Zeiler_conv5: expected a binary Caffe"),
    "mat-given-as-caffemodel": (_mat_as_conv, r"an HDF5 file \(a MATLAB v7\.3 \.mat file\?\)"),
    "truncated-v73": (_truncated_mat("v73"), r"spp_model\.mat"),
    "truncated-v7": (_truncated_mat("v7"), r"spp_model\.mat"),
    "wrong-variable": (_other_variable, r"expected a variable 'spp_model', found \['model'\]"),
    "no-detectors": (_no_detectors, r"expected a field 'detectors'"),
    "conv5-channels": (_wider_conv5, r"expected conv5 of the Caffe file to have 4 channels"),
    "regressor-classes": (_regressor_of_two_classes, r"one box regressor per class \(3\)"),
    "regressor-length": (_regressor_of_another_pyramid, r"features of length 200"),
    "level-5": (
        lambda tmp: _write(tmp, make_release(0, spm_divs=(1, 2, 5))),
        r"spm_divs: expected distinct levels among \[1, 2, 3, 4, 6\], found \[1, 2, 5\]",
    ),
    "svm-on-fc6": (
        lambda tmp: _write(tmp, make_release(0, layer=6)),
        r"training_opts\.layer: expected 7 \(SVMs on fc7",
    ),
    "binarized-regressor": (_binarized_regressor, r"binarize: expected false, found true"),
}


@pytest.mark.parametrize("case", list(BREAKERS))
def test_bad_release_files_give_a_clear_error_and_write_nothing(tmp_path: Path, case: str) -> None:
    make, match = BREAKERS[case]
    files = make(tmp_path / "files")
    store = tmp_path / "store"
    store.mkdir()
    with pytest.raises(ReleaseFormatError, match=match):
        import_spp_net_release(
            files["spp_model"],
            name="broken",
            store=store,
            conv_weights=files["conv"],
            bbox_regressor=files.get("bbox_reg"),
        )
    assert list(store.iterdir()) == []


def test_an_existing_model_is_not_overwritten(tmp_path: Path) -> None:
    files = _write(tmp_path / "files", make_release(0))
    (tmp_path / "store" / "taken").mkdir(parents=True)
    (tmp_path / "store" / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(ReleaseFormatError, match="already exists"):
        import_spp_net_release(
            files["spp_model"], name="taken", store=tmp_path / "store", conv_weights=files["conv"]
        )
    assert [p.name for p in (tmp_path / "store").iterdir()] == ["taken"]
    assert [p.name for p in (tmp_path / "store" / "taken").iterdir()] == ["keep.txt"]


def test_a_failure_while_writing_leaves_no_staging_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = _write(tmp_path / "files", make_release(0))

    def fail(*_args: object, **_kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("app.model.release.importer.save_model", fail)
    with pytest.raises(OSError, match="No space left"):
        import_spp_net_release(
            files["spp_model"], name="full", store=tmp_path / "store", conv_weights=files["conv"]
        )
    assert list((tmp_path / "store").iterdir()) == []


def test_missing_trunk_and_missing_files_are_named(tmp_path: Path) -> None:
    files = _write(tmp_path / "files", make_release(0))
    with pytest.raises(ReleaseFormatError, match=r"no --conv-weights given .*cnn_model"):
        import_spp_net_release(files["spp_model"], name="m", store=tmp_path / "store")
    with pytest.raises(SystemExit, match=r"spp: .*nowhere\.mat: No such file or directory"):
        main(
            [
                "import",
                "spp-net-release",
                "--model-mat",
                str(tmp_path / "nowhere.mat"),
                "--conv-weights",
                str(files["conv"]),
                "--name",
                "m",
                "--store",
                str(tmp_path / "store"),
            ]
        )
    with pytest.raises(SystemExit, match=r"spp: .*invalid model name"):
        main(
            [
                "import",
                "spp-net-release",
                "--model-mat",
                str(files["spp_model"]),
                "--name",
                "../escape",
                "--store",
                str(tmp_path / "store"),
            ]
        )
    assert not (tmp_path / "store").exists() or list((tmp_path / "store").iterdir()) == []
