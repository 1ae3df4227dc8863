"""Manifest configuration: the fields that carry an imported pipeline's differences from
docs/model.md default to docs/model.md's behaviour, so manifests written before them load
unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.model.config import DetectionConfig, ModelConfig, WindowConfig
from app.model.store import Manifest, read_manifest

SHIPPED = Path(__file__).resolve().parents[2] / "model_store" / "zf5-shapes"


def test_the_shipped_manifest_loads_with_specs_rules() -> None:
    manifest = read_manifest(SHIPPED)
    raw = json.loads((SHIPPED / "manifest.json").read_text())
    assert "windows" not in raw and "calibration" not in raw["detection"]
    assert manifest.windows == WindowConfig()
    windows = manifest.windows
    assert (windows.scale_choice, windows.target_side, windows.area_extent) == (
        "area",
        224.0,
        "exclusive",
    )
    assert (windows.box_scaling, windows.projection, windows.stride) == ("factor", "stride", 16)
    det = manifest.detection
    assert (det.min_score, det.nms_extent, det.calibration) == (-1.5, "exclusive", "platt")
    model = manifest.model
    assert model.conv_pads == (3, 2, 1, 1, 1) and model.pool_pad == 1
    assert not model.pool_ceil_mode and model.classifier
    assert model.channels is None and model.fc7_dim is None
    assert model.conv_channels == (24, 64, 96, 96, 64) and model.feature_dim == model.fc_dim


def test_new_fields_round_trip_through_json() -> None:
    manifest = read_manifest(SHIPPED)
    changed = manifest.model_copy(
        update={
            "windows": WindowConfig(
                scale_choice="expected_scale",
                target_side=208,
                area_extent="inclusive",
                box_scaling="align_corners",
                projection="offset",
                stride=16,
                offset0=18,
                offset=9.5,
            ),
            "detection": DetectionConfig(
                min_score=None, nms_extent="inclusive", calibration="none"
            ),
        }
    )
    again = Manifest.model_validate(json.loads(json.dumps(changed.model_dump(mode="json"))))
    assert again == changed
    assert again.detection.min_score is None


def test_unknown_or_bad_values_are_refused() -> None:
    with pytest.raises(ValidationError):
        WindowConfig(projection="nearest")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="integer stride"):
        WindowConfig(projection="stride", stride=15.5)
    assert WindowConfig(projection="offset", stride=15.5).stride == 15.5
    with pytest.raises(ValidationError):
        DetectionConfig(nms_extent="plus-one")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        DetectionConfig(calibration="isotonic")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        WindowConfig(**{"surprise": 1})  # type: ignore[arg-type]


def test_explicit_channels_and_fc7_width() -> None:
    config = ModelConfig(num_classes=3, channels=(4, 5, 6, 7, 8), fc_dim=16, fc7_dim=12)
    assert config.conv_channels == (4, 5, 6, 7, 8)
    assert config.spp_dim == 8 * 50 and config.feature_dim == 12
