"""The whole import at full ZF-5 size (conv 96-256-384-384-256, fc6 4096 x 12800, 20 classes):
the served detector scores windows as the reference does."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from release_check import check_windows, windows_of_many_sizes
from release_files import make_release, write_release

from app.inference.detector import Detector
from app.model.release import import_spp_net_release
from app.model.store import load_model

pytestmark = pytest.mark.slow


def test_full_size_release_imports_and_detects_as_the_reference(tmp_path: Path) -> None:
    arrays = make_release(
        21, channels=(96, 256, 384, 384, 256), fc_dims=(4096, 4096), num_classes=20
    )
    arrays.classes = [f"class{i}" for i in range(20)]  # make_release names at most 5
    files = write_release(tmp_path / "files", arrays, caffe_layout="v0", mat_format="v73")
    start = time.perf_counter()
    manifest = import_spp_net_release(
        files["spp_model"],
        name="full",
        store=tmp_path / "store",
        conv_weights=files["conv"],
        bbox_regressor=files["bbox_reg"],
        scales=(112, 160, 224),
    )
    detector = Detector(load_model(tmp_path / "store", "full"), "cpu")
    assert time.perf_counter() - start < 60
    assert manifest.model.spp_dim == 12800 and manifest.model.fc_dim == 4096
    assert detector.net.det_head.fc6.weight.shape == (4096, 12800)
    image = np.random.default_rng(22).integers(0, 256, (56, 72, 3), dtype=np.uint8)
    windows = windows_of_many_sizes(56, 72, 5, seed=23)
    ref = check_windows(detector, arrays, image, windows, "multi")
    assert len(set(ref.scale_index.tolist())) >= 2
