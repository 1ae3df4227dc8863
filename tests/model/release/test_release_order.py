"""The release's order of NMS and box regression: an imported model's FINAL detections (after
the per-class cap, NMS and regression) equal ``reference.py``'s test path, and differ from what
regressing first would give."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from reference import reference_nms, reference_test_path
from release_check import (
    _match_one_to_one,
    fully_clipped,
    reference_for,
    windows_of_many_sizes,
)
from release_files import make_release, write_release

from app.inference.detector import DetectOptions, Detector
from app.model.release import import_spp_net_release
from app.model.store import load_model

SCALES = (160, 240, 360)


def _imported(tmp_path: Path) -> tuple[Detector, object]:
    arrays = make_release(21, spm_divs=(1, 2, 3, 6), with_bbox=True)
    files = write_release(tmp_path / "files", arrays)
    import_spp_net_release(
        files["spp_model"],
        name="release",
        store=tmp_path / "store",
        conv_weights=files["conv"],
        bbox_regressor=files["bbox_reg"],
        scales=SCALES,
    )
    return Detector(load_model(tmp_path / "store", "release"), "cpu"), arrays


def _without_ties(
    detector: Detector, arrays: object, image: np.ndarray, windows: np.ndarray
) -> np.ndarray:
    """The windows whose pooled features no other window shares (such windows tie on every
    score, and NMS may keep either: the release and torchvision break ties differently)."""
    ref = reference_for(detector, arrays, image, windows, detector.scales_for("multi"))
    _, first, counts = np.unique(ref.scores.round(4), axis=0, return_index=True, return_counts=True)
    return windows[np.sort(first[counts == 1])]


def _expected(ref: object, image: np.ndarray, windows: np.ndarray, k: int, cap: int) -> list:
    boxes = fully_clipped(ref.boxes, image)[:, k]  # type: ignore[attr-defined]
    return reference_test_path(ref.scores[:, k], windows, boxes, cap)  # type: ignore[attr-defined]


@pytest.mark.parametrize("cap", [100, 6])
def test_final_detections_follow_the_release_order(tmp_path: Path, cap: int) -> None:
    detector, arrays = _imported(tmp_path)
    detection = detector.model.manifest.detection
    assert detection.nms_before_regression and detection.default_scales == "multi"
    image = np.random.default_rng(5).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    windows = _without_ties(detector, arrays, image, windows_of_many_sizes(90, 120, 40, seed=6))
    ref = reference_for(detector, arrays, image, windows, detector.scales_for("multi"))
    options = DetectOptions(min_confidence=0.0, max_per_class=cap)  # scales: the manifest's
    [result] = detector.detect([image], [windows], options)
    assert result.scales_used == [s for s in SCALES if s in result.scales_used]
    differs = False
    for k in range(len(arrays.classes)):  # type: ignore[attr-defined]
        want = _expected(ref, image, windows, k, cap)
        got = [d for d in result.detections if d.class_id == k]
        assert len(got) == len(want), f"class {k}"
        _match_one_to_one(
            np.array([d.score for d in got]),
            np.array([d.box for d in got]).reshape(-1, 4),
            np.array([score for score, _ in want]),
            np.array([box for _, box in want]).reshape(-1, 4),
        )
        regressed = fully_clipped(ref.boxes, image)[:, k]
        best = sorted(range(len(windows)), key=lambda i: -ref.scores[i, k])[:cap]
        first = reference_nms(regressed[best], ref.scores[best, k])
        differs |= sorted(best[j] for j in first) != sorted(
            best[j] for j in reference_nms(windows[best].astype(np.float64), ref.scores[best, k])
        )
    if cap == 100:  # (with the small cap few windows overlap: both orders agree there)
        assert differs, "on these windows regressing first must keep other windows"


def test_default_order_is_unchanged_for_other_models(tiny_model: object) -> None:
    """A manifest without the field keeps docs/model.md's order (regress, then NMS)."""
    detection = tiny_model.manifest.detection  # type: ignore[attr-defined]
    assert not detection.nms_before_regression and detection.default_scales == "single"
