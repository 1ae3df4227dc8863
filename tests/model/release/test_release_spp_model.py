"""spp_model.mat and bbox_regressor_final.mat: round trips in every format, clear errors."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from reference import ReleaseArrays
from release_files import MAT_WRITERS, bbox_reg_value, make_release, spp_model_value, write_mat

from app.model.release import (
    ReleaseFormatError,
    SppReleaseModel,
    read_bbox_regressor,
    read_spp_model,
)
from app.model.release.matlab import MatCell, MatStruct

SPM_ORDERS = [(1, 2, 3, 6), (6, 3, 2, 1)]


def assert_model_matches(model: SppReleaseModel, arrays: ReleaseArrays) -> None:
    assert [layer.name for layer in model.fc_layers] == [name for name, _, _ in arrays.fc]
    for layer, (_, w, b) in zip(model.fc_layers, arrays.fc, strict=True):
        assert layer.weight.dtype == np.float32 and layer.weight.shape == w.shape  # [out, in]
        np.testing.assert_array_equal(layer.weight, w)
        np.testing.assert_array_equal(layer.bias, b)
    assert model.first_fc_index == arrays.first_fc_idx
    assert model.pooler.spm_divs == arrays.spm_divs
    assert (model.pooler.offset0, model.pooler.offset) == (arrays.offset0, arrays.offset)
    assert model.pooler.step_standard == arrays.step_standard
    assert model.pooler.sz_conv_standard == arrays.sz_conv_standard
    assert model.feature_layer == arrays.layer
    assert model.feat_norm_mean == arrays.feat_norm_mean
    np.testing.assert_array_equal(model.svm_weight, arrays.W)
    np.testing.assert_array_equal(model.svm_bias, arrays.B)
    assert model.classes == tuple(arrays.classes)


@pytest.mark.parametrize("spm_divs", SPM_ORDERS, ids=["1236", "6321"])
@pytest.mark.parametrize("fmt", list(MAT_WRITERS))
def test_spp_model_round_trips(tmp_path: Path, fmt: str, spm_divs: tuple[int, ...]) -> None:
    arrays = make_release(7, spm_divs=spm_divs)
    value = spp_model_value(arrays, function_handles=fmt == "v73")
    model = read_spp_model(write_mat(tmp_path / "spp_model.mat", fmt, {"spp_model": value}))
    assert_model_matches(model, arrays)
    assert model.pooled_dim == 4 * 50
    assert model.pooler.bins == 50
    assert [layer.name for layer in model.feature_fc_layers] == ["fc6", "fc7"]


def test_svm_on_fc6_or_pool5_reads_the_right_feature_length(tmp_path: Path) -> None:
    for layer, dim in ((6, 16), (5, 200)):
        arrays = make_release(8, layer=layer, fc_dims=(16, 12, 21))
        path = write_mat(tmp_path / f"m{layer}.mat", "v7", {"spp_model": spp_model_value(arrays)})
        model = read_spp_model(path)
        assert model.svm_weight.shape == (3, dim)
        assert len(model.feature_fc_layers) == layer - 5
        assert len(model.fc_layers) == 3


@pytest.mark.parametrize("fmt", list(MAT_WRITERS))
def test_bbox_regressor_round_trips(tmp_path: Path, fmt: str) -> None:
    arrays = make_release(9)
    bbox = arrays.bbox
    assert bbox is not None
    reg = read_bbox_regressor(
        write_mat(tmp_path / "b.mat", fmt, {"bbox_reg": bbox_reg_value(arrays)})
    )
    assert (reg.feature_layer, reg.feat_norm_mean, reg.binarize) == (5, bbox.feat_norm_mean, False)
    assert reg.feature_dim == 200
    for got, k in zip(reg.models, range(3), strict=True):
        np.testing.assert_array_equal(got.mu, bbox.mu[k].reshape(4))
        np.testing.assert_array_equal(got.t, bbox.T[k])
        np.testing.assert_array_equal(got.t_inv, bbox.T_inv[k])
        np.testing.assert_array_equal(got.beta, bbox.Beta[k])  # [D + 1, 4]


# ------------------------------------------------------------------ wrong structs ------------


def _edit(struct: MatStruct, path: str, change: Callable[[Any], Any]) -> MatStruct:
    """A copy of ``struct`` with the value at dotted ``path`` (through 1x1 structs) changed."""
    head, _, rest = path.partition(".")
    element = dict(struct.elements[0])
    if rest:
        element[head] = _edit(element[head], rest, change)
    else:
        new = change(element.get(head))
        if new is None:
            del element[head]
        else:
            element[head] = new
    return MatStruct(shape=(1, 1), fields=tuple(element), elements=(element,))


def _layers_edit(change: Callable[[list[dict[str, Any]]], None]) -> Callable[[Any], Any]:
    def edit(layers: MatStruct) -> MatStruct:
        elements = [dict(e) for e in layers.elements]
        change(elements)
        return dataclasses.replace(layers, elements=tuple(elements), shape=(len(elements), 1))

    return edit


def _short_fc7(elements: list[dict[str, Any]]) -> None:
    w, b = elements[1]["weights"].elements
    elements[1]["weights"] = MatCell((2, 1), (w[:, :15], b))


def _weight_only(elements: list[dict[str, Any]]) -> None:
    elements[0]["weights"] = MatCell((1, 1), elements[0]["weights"].elements[:1])


def _short_bias(elements: list[dict[str, Any]]) -> None:
    w, b = elements[0]["weights"].elements
    elements[0]["weights"] = MatCell((2, 1), (w, b[:-1]))


def _folds(detectors: MatStruct) -> MatStruct:
    return MatStruct((1, 2), detectors.fields, detectors.elements * 2)


WRONG = [
    ("detectors", lambda v: None, "expected a field 'detectors'"),
    (
        "detectors.W",
        lambda w: w[:, :-1],
        r"detectors\.W: expected a 3x12 matrix, found a 3x11 single",
    ),
    ("detectors.B", lambda b: b[:2], r"detectors\.B: expected a vector of 3 values"),
    (
        "classes",
        lambda c: MatCell((1, 4), (*c.elements, "boat")),
        r"detectors\.W: expected a 4x12 matrix",
    ),
    (
        "cnn.layers",
        _layers_edit(_short_fc7),
        r"layers\(2\)\.weights\{1\}: expected 16 inputs \(the outputs of fc6\)",
    ),
    (
        "cnn.layers",
        _layers_edit(_weight_only),
        r"layers\(1\)\.weights: expected a cell \{weight, bias\}",
    ),
    ("cnn.layers", _layers_edit(_short_bias), r"weights\{2\}: expected a vector of 16 values"),
    ("cnn.layers", _layers_edit(lambda e: e.clear()), "expected fc layers, found none"),
    ("spp_pooler.spm_divs", lambda d: np.array([[1.0, 0.0, 3.0]]), "positive integers"),
    ("spp_pooler.step_standard", lambda s: np.zeros((1, 1)), "expected a positive number"),
    ("spp_pooler.offset0", lambda s: "18", r"offset0: expected a number, found the text '18'"),
    (
        "training_opts.layer",
        lambda s: np.array([[9.0]]),
        r"expected pool5 \(5\) or one of the fc layers 6\.\.7, found 9",
    ),
    ("training_opts.layer", lambda s: np.array([[6.5]]), "expected an integer"),
    ("training_opts.feat_norm_mean", lambda s: np.zeros((1, 1)), "positive number"),
    ("detectors", _folds, r"spp_model\.detectors: expected a 1x1 struct, found a 1x2 struct"),
    ("cnn.first_fc_idx", lambda v: None, "expected a field 'first_fc_idx'"),
]


@pytest.mark.parametrize(
    ("path", "change", "match"), WRONG, ids=[f"{w[0]}-{i}" for i, w in enumerate(WRONG)]
)
def test_wrong_spp_model_structs_are_named(
    tmp_path: Path, path: str, change: Callable[[Any], Any], match: str
) -> None:
    value = _edit(spp_model_value(make_release(10)), path, change)
    file = write_mat(tmp_path / "spp_model.mat", "v7", {"spp_model": value})
    with pytest.raises(ReleaseFormatError, match=match) as info:
        read_spp_model(file)
    assert "spp_model.mat" in str(info.value)


def test_wrong_bbox_regressors_are_named(tmp_path: Path) -> None:
    arrays = make_release(11)
    value = bbox_reg_value(arrays)
    cases = [
        (
            lambda m: MatStruct(
                (1, 1), m.fields, ({**m.elements[0], "Beta": m.elements[0]["Beta"][:-1]},)
            ),
            r"models\{2\}\.Beta: expected a 201x4 matrix",
        ),
        (
            lambda m: MatStruct((1, 1), m.fields, ({**m.elements[0], "T_inv": np.eye(3)},)),
            r"models\{2\}\.T_inv: expected a 4x4 matrix",
        ),
        (
            lambda m: MatStruct((1, 1), m.fields, ({**m.elements[0], "mu": np.zeros((1, 3))},)),
            r"models\{2\}\.mu: expected a vector of 4 values",
        ),
    ]
    for change, match in cases:
        models = value.elements[0]["models"]
        bad_models = MatCell(
            models.shape, (models.elements[0], change(models.elements[1]), models.elements[2])
        )
        bad = _edit(value, "models", lambda _m, bad_models=bad_models: bad_models)
        with pytest.raises(ReleaseFormatError, match=match):
            read_bbox_regressor(write_mat(tmp_path / "b.mat", "v7", {"bbox_reg": bad}))
    spp = write_mat(tmp_path / "s.mat", "v7", {"spp_model": spp_model_value(arrays)})
    with pytest.raises(
        ReleaseFormatError, match=r"expected a variable 'bbox_reg', found \['spp_model'\]"
    ):
        read_bbox_regressor(spp)
