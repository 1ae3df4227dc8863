"""Fixtures of tests/model/release; the file builders live in ``release_files.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
from reference import ReleaseArrays
from release_files import make_release, spp_model_value, write_caffemodel, write_mat


@pytest.fixture
def release() -> ReleaseArrays:
    """Small random release numbers: conv channels 4, fc 16 -> 12, 3 classes, levels 1, 2, 3, 6."""
    return make_release(0)


@pytest.fixture
def release_files(tmp_path: Path, release: ReleaseArrays) -> dict[str, Path]:
    """The release of :func:`release` written as ``Zeiler_conv5`` (V1) and a v7.3 spp_model.mat."""
    return {
        "conv": write_caffemodel(tmp_path / "Zeiler_conv5", release.conv, layout="v1"),
        "spp_model": write_mat(
            tmp_path / "spp_model.mat", "v73", {"spp_model": spp_model_value(release)}
        ),
    }
