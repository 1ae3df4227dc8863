"""Cross-file checks and the fc6 column reordering for another pyramid level order."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from reference import ReleaseArrays, pool_region
from release_files import bbox_reg_value, make_release, spp_model_value, write_caffemodel, write_mat

from app.model.release import (
    ClassBoxRegressor,
    ConvLayerWeights,
    FcLayer,
    ReleaseConvTrunk,
    ReleaseFormatError,
    SppPooler,
    SppReleaseModel,
    check_release_consistency,
    conv5_channels,
    pyramid_column_order,
    read_bbox_regressor,
    read_release_conv_trunk,
    read_spp_model,
    reorder_fc6_columns,
)
from app.model.release.bbox_regressor import BboxRegressor


def _model(
    channels: int = 4, spm_divs: tuple[int, ...] = (1, 2, 3, 6), classes: int = 3
) -> SppReleaseModel:
    pooled = channels * sum(n * n for n in spm_divs)
    return SppReleaseModel(
        fc_layers=(
            FcLayer("fc6", np.zeros((8, pooled), np.float32), np.zeros(8, np.float32)),
            FcLayer("fc7", np.zeros((6, 8), np.float32), np.zeros(6, np.float32)),
        ),
        first_fc_index=6,
        pooler=SppPooler(spm_divs, 18.0, 9.5, 16.0, 13.0),
        feature_layer=7,
        feat_norm_mean=1.0,
        svm_weight=np.zeros((classes, 6), np.float32),
        svm_bias=np.zeros(classes, np.float32),
        classes=tuple(f"c{i}" for i in range(classes)),
    )


def _trunk(channels: int) -> ReleaseConvTrunk:
    layer = ConvLayerWeights(
        "conv5", np.zeros((channels, 4, 3, 3), np.float32), np.zeros(channels, np.float32)
    )
    return ReleaseConvTrunk(layers=(layer,))


def _regressor(classes: int, dim: int, layer: int = 5) -> BboxRegressor:
    model = ClassBoxRegressor(np.zeros(4), np.eye(4), np.eye(4), np.zeros((dim + 1, 4)))
    return BboxRegressor(
        models=(model,) * classes, feature_layer=layer, feat_norm_mean=1.0, binarize=False
    )


def test_consistent_parts_pass_and_channels_follow_from_fc6() -> None:
    model = _model()
    assert conv5_channels(model) == 4
    check_release_consistency(model, _trunk(4), _regressor(3, 200))
    check_release_consistency(model, None, _regressor(3, 6, layer=7))


def test_inconsistent_parts_are_named() -> None:
    model = _model()
    with pytest.raises(ReleaseFormatError, match="conv5 of the Caffe file to have 4 channels"):
        check_release_consistency(model, _trunk(8))
    with pytest.raises(ReleaseFormatError, match=r"one box regressor per class \(3\), found 2"):
        check_release_consistency(model, None, _regressor(2, 200))
    with pytest.raises(ReleaseFormatError, match="Beta of 201 rows"):
        check_release_consistency(model, None, _regressor(3, 199))
    with pytest.raises(ReleaseFormatError, match="found 9"):
        check_release_consistency(model, None, _regressor(3, 200, layer=9))
    odd = dataclasses.replace(
        model, fc_layers=(FcLayer("fc6", np.zeros((8, 201), np.float32), np.zeros(8, np.float32)),)
    )
    with pytest.raises(ReleaseFormatError, match="found 201 inputs"):
        conv5_channels(odd)


def test_reordered_fc6_gives_the_same_output_on_the_other_layout() -> None:
    rng = np.random.default_rng(0)
    conv5 = rng.random((4, 9, 11))
    region = (2, 3, 8, 10)
    release_order, target_order = (6, 3, 2, 1), (1, 2, 3, 6)
    x_release = pool_region(conv5, region, release_order)
    x_target = pool_region(conv5, region, target_order)
    weight = rng.normal(size=(5, x_release.size))
    reordered = reorder_fc6_columns(weight, release_order, target_order, channels=4)
    np.testing.assert_allclose(reordered @ x_target, weight @ x_release)
    idx = pyramid_column_order(release_order, target_order, 4)
    np.testing.assert_array_equal(x_release[idx], x_target)
    np.testing.assert_array_equal(
        pyramid_column_order((1, 2, 3, 6), (1, 2, 3, 6), 4), np.arange(200)
    )


def test_reordering_needs_the_same_levels_and_width() -> None:
    with pytest.raises(ReleaseFormatError, match="same pyramid levels"):
        pyramid_column_order((1, 2, 4), (1, 2, 3), 4)
    with pytest.raises(ReleaseFormatError, match="distinct"):
        pyramid_column_order((1, 1), (1, 1), 4)
    with pytest.raises(ReleaseFormatError, match=r"\[out, 200\]"):
        reorder_fc6_columns(np.zeros((3, 199)), (6, 3, 2, 1), (1, 2, 3, 6), 4)


def test_synthetic_release_files_read_back_consistent(tmp_path: Path) -> None:
    arrays = make_release(0, spm_divs=(6, 3, 2, 1))
    trunk = read_release_conv_trunk(
        write_caffemodel(tmp_path / "Zeiler_conv5", arrays.conv, layout="v0")
    )
    model = read_spp_model(
        write_mat(tmp_path / "s.mat", "v73", {"spp_model": spp_model_value(arrays)})
    )
    regressor = read_bbox_regressor(
        write_mat(tmp_path / "b.mat", "v7", {"bbox_reg": bbox_reg_value(arrays)})
    )
    check_release_consistency(model, trunk, regressor)
    assert conv5_channels(model) == trunk.out_channels == 4


def test_release_fixtures_read_back(release: ReleaseArrays, release_files: dict[str, Path]) -> None:
    trunk = read_release_conv_trunk(release_files["conv"])
    model = read_spp_model(release_files["spp_model"])
    check_release_consistency(model, trunk)
    np.testing.assert_array_equal(trunk.layers[0].weight, release.conv[0][1])
    assert model.classes == tuple(release.classes)
