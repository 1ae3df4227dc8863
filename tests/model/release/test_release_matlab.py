"""The .mat reader: v7, v7.3 by hand and v7.3 by hdf5storage give the same MATLAB values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mat_writers import FunctionHandle, write_mat_v7, write_mat_v73
from release_files import MAT_WRITERS, write_mat

from app.model.release import ReleaseFormatError
from app.model.release.matlab import (
    MatCell,
    MatStruct,
    MatUnsupported,
    MatValue,
    describe,
    load_mat_variable,
)


def _cell(shape: tuple[int, ...], items: list[Any]) -> MatCell:
    return MatCell(shape=shape, elements=tuple(items))


def _structs(shape: tuple[int, ...], elements: list[dict[str, Any]]) -> MatStruct:
    return MatStruct(shape=shape, fields=tuple(elements[0]), elements=tuple(elements))


def sample_tree() -> MatStruct:
    """Every kind of value the release files hold, with orders that a transposition would break."""
    return _structs(
        (1, 1),
        [
            {
                "double_matrix": np.arange(6, dtype=np.float64).reshape(2, 3),
                "single_3d": np.arange(24, dtype=np.float32).reshape(2, 3, 4),
                "int_row": np.array([[1, -2, 3]], dtype=np.int32),
                "bytes": np.array([[0, 255]], dtype=np.uint8),
                "flag": np.array([[True, False]]),
                "empty": np.zeros((0, 0)),
                "empty_rows": np.zeros((0, 5), dtype=np.float32),
                "name": "fc6",
                "unicode": "Ünïcødé ∑",
                "blank": "",
                "cells": _cell(
                    (2, 3), ["a", np.ones((1, 1)), "c", _cell((1, 1), ["nested"]), "e", "f"]
                ),
                "no_cells": _cell((0, 0), []),
                "layers": _structs(
                    (2, 2),
                    [{"w": np.full((2, 1), float(i)), "tag": f"layer{i}"} for i in range(4)],
                ),
            }
        ],
    )


def assert_same(got: MatValue, want: Any, where: str = "") -> None:
    if isinstance(want, MatStruct):
        assert isinstance(got, MatStruct), where
        assert got.shape == want.shape and got.fields == want.fields, where
        for i, (g, w) in enumerate(zip(got.elements, want.elements, strict=True)):
            for f in want.fields:
                assert_same(g[f], w[f], f"{where}({i}).{f}")
    elif isinstance(want, MatCell):
        assert isinstance(got, MatCell), where
        assert got.shape == want.shape, where
        for i, (g, w) in enumerate(zip(got.elements, want.elements, strict=True)):
            assert_same(g, w, f"{where}{{{i}}}")
    elif isinstance(want, str):
        assert got == want, where
    else:
        assert isinstance(got, np.ndarray), where
        assert got.dtype == want.dtype, (where, got.dtype, want.dtype)
        assert got.shape == want.shape, (where, got.shape, want.shape)
        np.testing.assert_array_equal(got, want, err_msg=where)


@pytest.mark.parametrize("fmt", list(MAT_WRITERS))
def test_every_kind_of_value_round_trips(tmp_path: Path, fmt: str) -> None:
    tree = sample_tree()
    path = write_mat(tmp_path / "t.mat", fmt, {"tree": tree, "other": np.ones((1, 1))})
    assert_same(load_mat_variable(path, "tree"), tree, "tree")


def test_struct_arrays_and_cells_keep_matlab_column_major_order(tmp_path: Path) -> None:
    path = write_mat(tmp_path / "t.mat", "v73", {"tree": sample_tree()})
    tree = load_mat_variable(path, "tree")
    assert isinstance(tree, MatStruct)
    layers = tree.elements[0]["layers"]
    assert isinstance(layers, MatStruct)
    # MATLAB's layers(2, 1) is the second element in column-major order
    assert [e["tag"] for e in layers.elements] == ["layer0", "layer1", "layer2", "layer3"]
    cells = tree.elements[0]["cells"]
    assert isinstance(cells, MatCell)
    assert cells.elements[0] == "a" and cells.elements[2] == "c"  # cells{1, 1}, cells{1, 2}


def test_function_handles_are_kept_as_unsupported_values(tmp_path: Path) -> None:
    value = _structs((1, 1), [{"expected_scale": FunctionHandle(), "step": np.ones((1, 1))}])
    path = write_mat(tmp_path / "t.mat", "v73", {"pooler": value})
    got = load_mat_variable(path, "pooler")
    assert isinstance(got, MatStruct)
    assert got.elements[0]["expected_scale"] == MatUnsupported("function_handle")
    assert "function_handle" in describe(got.elements[0]["expected_scale"])


def test_describe_names_class_and_size() -> None:
    assert describe(np.zeros((20, 4095), dtype=np.float32)) == "a 20x4095 single"
    assert describe(_cell((1, 2), ["a", "b"])) == "a 1x2 cell"
    assert describe("fc6") == "the text 'fc6'"


@pytest.mark.parametrize("writer", [write_mat_v7, write_mat_v73], ids=["v7", "v73"])
def test_truncated_mat_files_are_a_clear_error(tmp_path: Path, writer: Any) -> None:
    big = _structs((1, 1), [{"w": np.random.default_rng(0).normal(size=(300, 200))}])
    path = tmp_path / "t.mat"
    writer(path, {"spp_model": big})
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 100):
        path.write_bytes(data[:cut])
        with pytest.raises(ReleaseFormatError, match="cannot be read"):
            load_mat_variable(path, "spp_model")


def test_other_files_and_missing_variables_are_named(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.mat"
    garbage.write_bytes(b"\x08\x01" * 500)
    with pytest.raises(ReleaseFormatError, match=r"garbage\.mat: expected a MATLAB \.mat file"):
        load_mat_variable(garbage, "spp_model")
    for fmt in ("v7", "v73"):
        path = write_mat(tmp_path / f"b_{fmt}.mat", fmt, {"bbox_reg": np.ones((1, 1))})
        with pytest.raises(
            ReleaseFormatError, match=r"expected a variable 'spp_model', found \['bbox_reg'\]"
        ):
            load_mat_variable(path, "spp_model")
    with pytest.raises(FileNotFoundError):
        load_mat_variable(tmp_path / "absent.mat", "spp_model")
