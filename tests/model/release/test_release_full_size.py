"""Full ZF-5 size release files (fc6 4096 x 12800): the readers keep every number."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from reference import TRUNK, ReleaseArrays
from release_files import CLASS_NAMES, spp_model_value, write_caffemodel, write_mat

from app.model.release import check_release_consistency, read_release_conv_trunk, read_spp_model

pytestmark = pytest.mark.slow


def _full_size(rng: np.random.Generator) -> ReleaseArrays:
    conv, in_ch = [], 3
    for (name, k, _s, _p, _lp), out in zip(TRUNK, (96, 256, 384, 384, 256), strict=True):
        conv.append(
            (
                name,
                rng.standard_normal((out, in_ch, k, k), np.float32),
                rng.standard_normal(out, np.float32),
            )
        )
        in_ch = out
    fc = [
        (
            "fc6",
            rng.standard_normal((4096, 12800), np.float32),
            rng.standard_normal(4096, np.float32),
        ),
        (
            "fc7",
            rng.standard_normal((4096, 4096), np.float32),
            rng.standard_normal(4096, np.float32),
        ),
    ]
    classes = (CLASS_NAMES * 4)[:20]
    return ReleaseArrays(
        conv=conv,
        fc=fc,
        first_fc_idx=6,
        spm_divs=(1, 2, 3, 6),
        offset0=18.0,
        offset=9.5,
        step_standard=16.0,
        sz_conv_standard=13.0,
        layer=7,
        feat_norm_mean=31.5,
        W=rng.standard_normal((20, 4096), np.float32),
        B=rng.standard_normal(20, np.float32),
        classes=[f"{c}{i}" for i, c in enumerate(classes)],
    )


def test_full_size_release_reads_exactly(tmp_path: Path) -> None:
    """spp_train.m saves with -v7.3; the v7 path is the same code, tested at small size."""
    arrays = _full_size(np.random.default_rng(0))
    trunk = read_release_conv_trunk(
        write_caffemodel(tmp_path / "Zeiler_conv5", arrays.conv, layout="v0")
    )
    for layer, (_, w, b) in zip(trunk.layers, arrays.conv, strict=True):
        np.testing.assert_array_equal(layer.weight, w)
        np.testing.assert_array_equal(layer.bias, b)
    path = write_mat(tmp_path / "spp_model.mat", "v73", {"spp_model": spp_model_value(arrays)})
    start = time.perf_counter()
    model = read_spp_model(path)
    assert time.perf_counter() - start < 60
    assert model.fc_layers[0].weight.shape == (4096, 12800)
    np.testing.assert_array_equal(model.fc_layers[0].weight, arrays.fc[0][1])
    np.testing.assert_array_equal(model.fc_layers[1].weight, arrays.fc[1][1])
    np.testing.assert_array_equal(model.svm_weight, arrays.W)
    check_release_consistency(model, trunk)
