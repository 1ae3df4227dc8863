"""An imported release's ``Detector`` against ``reference.py`` on given windows.

(A module of its own, not conftest.py, so that test modules can import it by a unique name.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from reference import ReferenceOutput, ReleaseArrays, reference_detect_windows

from app.inference.detector import DetectOptions, Detector, ScaleMode, score_windows
from app.model.preprocess import resize_to_scale
from app.ops.boxes import clip_boxes, decode_boxes

SCORE_TOL = {"rtol": 1e-4, "atol": 1e-4}
BOX_TOL = {"rtol": 1e-5, "atol": 2e-3}  # pixels


def windows_of_many_sizes(height: int, width: int, count: int, seed: int) -> np.ndarray:
    """``[count + 3, 4]`` float32 windows in the image's 0-based inclusive frame: random sides
    from 8 pixels to the image's (log-uniform), plus the whole image, a 1-pixel window and a
    border strip."""
    rng = np.random.default_rng(seed)
    w = np.exp(rng.uniform(np.log(8), np.log(width - 1), count))
    h = np.exp(rng.uniform(np.log(8), np.log(height - 1), count))
    x1 = rng.uniform(0, width - 1 - w)
    y1 = rng.uniform(0, height - 1 - h)
    boxes = np.stack([x1, y1, x1 + w, y1 + h], axis=1).round(1)
    extra = [
        [0, 0, width - 1, height - 1],
        [width // 2, height // 2, width // 2, height // 2],
        [width - 3, 0, width - 1, height - 1],
    ]
    return np.concatenate([boxes, extra]).astype(np.float32)


def reference_for(
    detector: Detector,
    arrays: ReleaseArrays,
    image: np.ndarray,
    windows: np.ndarray,
    scales: Sequence[int],
) -> ReferenceOutput:
    """The reference on the same resized images as the detector (its resize, its cap)."""
    cap = detector.model.manifest.detection.max_long_side

    def resize(img: np.ndarray, scale: int) -> np.ndarray:
        return resize_to_scale(img, scale, cap)[0]

    return reference_detect_windows(arrays, image, windows, scales, resize)


def fully_clipped(boxes: np.ndarray, image: np.ndarray) -> np.ndarray:
    """``boxes [..., 4]`` with every coordinate clipped to the image, as ``clip_boxes`` does.

    The release (``spp_test_bbox_regressor.m``) clips only x1, y1 from below and x2, y2 from
    above, so a box regressed wholly outside the image keeps ``x2 < 0`` (say); the service clips
    all four, collapsing such a box onto the border (docs/serving-release.md). Boxes inside the
    image are the same either way.
    """
    height, width = image.shape[:2]
    out = boxes.copy()
    out[..., 0::2] = out[..., 0::2].clip(0, width - 1)
    out[..., 1::2] = out[..., 1::2].clip(0, height - 1)
    return out


def regressed_boxes(
    detector: Detector, windows: np.ndarray, deltas: torch.Tensor, image: np.ndarray
) -> np.ndarray:
    """Per window and class, the decoded and clipped box ``[N, K, 4]`` (as ``postprocess``)."""
    n, k = deltas.shape[:2]
    proposals = torch.from_numpy(windows).repeat_interleave(k, dim=0)  # [N * K, 4]
    boxes = clip_boxes(decode_boxes(deltas.reshape(-1, 4), proposals), image.shape[:2])
    return boxes.reshape(n, k, 4).numpy()


def check_windows(
    detector: Detector,
    arrays: ReleaseArrays,
    image: np.ndarray,
    windows: np.ndarray,
    mode: ScaleMode,
) -> ReferenceOutput:
    """Per-window scores, scale choice and regressed boxes equal the reference's."""
    scales = detector.scales_for(mode)
    ref = reference_for(detector, arrays, image, windows, scales)
    with torch.inference_mode():
        pooled, used = detector.pooled_windows(image, torch.from_numpy(windows), scales)
        scores, confidences, deltas = score_windows(detector.runtime, pooled)
    assert used == [scales[i] for i in sorted(set(ref.scale_index.tolist()))]
    np.testing.assert_allclose(scores.numpy(), ref.scores, **SCORE_TOL)
    np.testing.assert_allclose(confidences.numpy(), 1 / (1 + np.exp(-ref.scores)), **SCORE_TOL)
    if ref.boxes is not None:
        got = regressed_boxes(detector, windows, deltas, image)
        np.testing.assert_allclose(got, fully_clipped(ref.boxes, image), **BOX_TOL)
    else:
        assert not deltas.any(), "without a regressor the boxes stay as proposed"
    return ref


def check_detect(
    detector: Detector,
    arrays: ReleaseArrays,
    image: np.ndarray,
    windows: np.ndarray,
    mode: ScaleMode,
) -> None:
    """``Detector.detect`` with nothing suppressed or dropped: per class, the detections are
    the windows, with the reference's scores and (regressed) boxes."""
    ref = reference_for(detector, arrays, image, windows, detector.scales_for(mode))
    options = DetectOptions(scales=mode, nms_iou=1.0, max_per_class=10**6, min_confidence=0.0)
    [result] = detector.detect([image], [windows], options)
    assert result.scales_used == sorted(
        {detector.scales_for(mode)[i] for i in ref.scale_index.tolist()},
        key=detector.scales_for(mode).index,
    )
    if ref.boxes is not None:
        expected_boxes = fully_clipped(ref.boxes, image)
    else:  # not regressed: the window clipped to the image
        clipped = fully_clipped(windows.astype(np.float64), image)
        expected_boxes = np.repeat(clipped[:, None], len(arrays.classes), axis=1)
    for k in range(len(arrays.classes)):
        mine = [d for d in result.detections if d.class_id == k]
        assert len(mine) == len(windows), "nms_iou=1 and no score threshold keep every window"
        assert all(d.label == arrays.classes[k] for d in mine)
        _match_one_to_one(
            np.array([d.score for d in mine]),
            np.array([d.box for d in mine]),
            ref.scores[:, k],
            expected_boxes[:, k],
        )


def _close(got: np.ndarray, want: np.ndarray | float, tol: dict[str, float]) -> np.ndarray:
    return np.abs(got - want) <= tol["atol"] + tol["rtol"] * np.abs(want)


def _match_one_to_one(
    scores: np.ndarray, boxes: np.ndarray, ref_scores: np.ndarray, ref_boxes: np.ndarray
) -> None:
    """Each reference (score, box) has its own detection with that score and box (detections
    carry no window index; windows projected onto the same cells share a score)."""
    used = np.zeros(len(scores), dtype=bool)
    for i in range(len(ref_scores)):
        fits = (
            _close(scores, ref_scores[i], SCORE_TOL)
            & _close(boxes, ref_boxes[i], BOX_TOL).all(axis=1)
            & ~used
        )
        assert fits.any(), (
            f"window {i}: no detection with score {ref_scores[i]:.6f} and box "
            f"{ref_boxes[i].round(3).tolist()}; nearest score "
            f"{scores[np.abs(scores - ref_scores[i]).argmin()]:.6f}"
        )
        used[int(np.flatnonzero(fits)[0])] = True
