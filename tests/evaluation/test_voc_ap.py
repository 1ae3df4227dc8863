"""VOC 2007 11-point AP on hand-worked cases (docs/model.md §8)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from app.data.voc import VocAnnotation, VocDataset
from app.evaluation.voc_ap import (
    MATCH_INCLUSIVE,
    evaluate_detections,
    load_detections_json,
    voc_ap_11point,
    voc_iou,
)


def _ann(
    image_id: str,
    boxes: Sequence[Sequence[float]],
    labels: list[str],
    difficult: list[bool] | None = None,
) -> VocAnnotation:
    n = len(labels)
    return VocAnnotation(
        image_id=image_id,
        width=200,
        height=200,
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        labels=labels,
        difficult=np.asarray(difficult or [False] * n, bool),
        truncated=np.zeros(n, bool),
    )


def _det(image_id: str, label: str, score: float, box: Sequence[float]) -> dict[str, object]:
    return {"image_id": image_id, "label": label, "score": score, "box": box}


A, B, C = [0, 0, 9, 9], [20, 20, 29, 29], [40, 40, 49, 49]


def test_iou_uses_the_plus_one_pixel_convention() -> None:
    # Columns 0..9 vs 5..14: 5 shared columns x 10 rows = 50 pixels; each box is 100 pixels.
    iou = voc_iou(np.array([0, 0, 9, 9]), np.array([[5, 0, 14, 9]]))
    np.testing.assert_allclose(iou, [50 / 150])
    # The same box is IoU 1; disjoint (touching at no pixel) is 0; a 1-pixel box has area 1.
    np.testing.assert_allclose(voc_iou(np.array(A), np.array([A, [10, 0, 19, 9]])), [1.0, 0.0])
    np.testing.assert_allclose(voc_iou(np.array([3, 3, 3, 3]), np.array([[3, 3, 3, 3]])), [1.0])


def test_iou_exactly_at_threshold_matches() -> None:
    assert MATCH_INCLUSIVE
    gt = {"i": _ann("i", [[0, 0, 19, 9]], ["a"])}
    # [0,0,9,9] covers 100 of the gt's 200 pixels: IoU exactly 0.5 -> a true positive.
    result = evaluate_detections([_det("i", "a", 1.0, A)], gt, ["a"])
    assert result.per_class["a"].tp.tolist() == [True]
    assert result.map == pytest.approx(1.0)


def test_11_point_interpolation_by_hand() -> None:
    recall = np.array([0.2, 0.4, 0.4, 0.6, 0.8])
    precision = np.array([1.0, 1.0, 0.67, 0.75, 0.5])
    # t = 0, .1, .2 -> 1; t = .3, .4 -> 1; t = .5, .6 -> .75; t = .7, .8 -> .5; t = .9, 1 -> 0
    assert voc_ap_11point(recall, precision) == pytest.approx((3 + 2 + 1.5 + 1) / 11)


def test_11_point_counts_a_recall_of_exactly_three_tenths() -> None:
    assert voc_ap_11point(np.array([3 / 10]), np.array([1.0])) == pytest.approx(4 / 11)


def test_empty_curve_has_zero_ap() -> None:
    assert voc_ap_11point(np.zeros(0), np.zeros(0)) == 0.0
    with pytest.raises(ValueError, match="of one shape"):
        voc_ap_11point(np.zeros(2), np.zeros(3))


def test_duplicates_are_false_positives_and_difficult_matches_are_ignored() -> None:
    gt = {"i": _ann("i", [A, B, C], ["a", "a", "a"], [False, False, True])}
    dets = [
        _det("i", "a", 0.9, A),  # TP
        _det("i", "a", 0.8, A),  # duplicate of A -> FP
        _det("i", "a", 0.7, C),  # on a difficult gt -> ignored
        _det("i", "a", 0.6, [100, 100, 110, 110]),  # nothing there -> FP
        _det("i", "a", 0.5, B),  # TP
    ]
    result = evaluate_detections(dets, gt, ["a"])
    a = result.per_class["a"]
    assert a.npos == 2
    assert a.num_detections == 5
    assert a.num_ignored == 1
    assert a.tp.tolist() == [True, False, False, True]
    np.testing.assert_allclose(a.precision, [1, 1 / 2, 1 / 3, 1 / 2])
    np.testing.assert_allclose(a.recall, [0.5, 0.5, 0.5, 1.0])
    # t = 0..0.5 -> max precision 1 (6 points); t = 0.6..1 -> 0.5 (5 points).
    assert a.ap == pytest.approx((6 * 1.0 + 5 * 0.5) / 11)
    assert result.map == pytest.approx(a.ap)


def test_detections_are_ranked_by_score_not_input_order() -> None:
    gt = {"i": _ann("i", [A], ["a"])}
    dets = [_det("i", "a", 0.1, A), _det("i", "a", 0.9, [100, 100, 120, 120])]
    a = evaluate_detections(dets, gt, ["a"]).per_class["a"]
    assert a.tp.tolist() == [False, True]
    np.testing.assert_allclose(a.scores, [0.9, 0.1])
    # precision 0 then 1/2 at recall 1 -> every threshold sees 1/2.
    assert a.ap == pytest.approx(0.5)


def test_detection_on_another_class_or_image_is_a_false_positive() -> None:
    gt = {"i": _ann("i", [A], ["a"]), "j": _ann("j", [B], ["b"])}
    dets = [_det("j", "a", 0.9, B), _det("i", "b", 0.8, A), _det("i", "a", 0.7, A)]
    result = evaluate_detections(dets, gt, ["a", "b"])
    assert result.per_class["a"].tp.tolist() == [False, True]
    assert result.per_class["b"].tp.tolist() == [False]
    assert result.per_class["b"].ap == 0.0


def test_class_without_detections_has_zero_ap_and_counts_in_map() -> None:
    gt = {"i": _ann("i", [A, B], ["a", "b"])}
    result = evaluate_detections([_det("i", "a", 1.0, A)], gt, ["a", "b"])
    assert result.per_class["a"].ap == pytest.approx(1.0)
    assert result.per_class["b"].ap == 0.0
    assert result.per_class["b"].tp.shape == (0,)
    assert result.map == pytest.approx(0.5)


def test_class_without_ground_truth_is_excluded_from_map() -> None:
    gt = {"i": _ann("i", [A], ["a"])}
    dets = [_det("i", "a", 1.0, A), _det("i", "c", 0.5, B)]
    result = evaluate_detections(dets, gt, ["a", "c"])
    assert math.isnan(result.per_class["c"].ap)
    assert result.per_class["c"].npos == 0
    assert result.map == pytest.approx(1.0)
    report = result.to_dict()
    assert report["ap"] == {"a": pytest.approx(1.0), "c": None}
    json.dumps(report, allow_nan=False)


def test_only_difficult_ground_truth_counts_as_no_ground_truth() -> None:
    gt = {"i": _ann("i", [A], ["a"], [True])}
    result = evaluate_detections([_det("i", "a", 1.0, A)], gt, ["a"])
    assert result.per_class["a"].npos == 0
    assert result.per_class["a"].num_ignored == 1
    assert math.isnan(result.map)
    assert result.to_dict()["map"] is None


def test_no_detections_at_all() -> None:
    gt = {"i": _ann("i", [A], ["a"]), "j": _ann("j", [], [])}
    result = evaluate_detections([], gt, ["a"])
    assert result.map == 0.0
    assert result.num_images == 2


def test_images_without_detections_still_count_their_ground_truth() -> None:
    gt = {"i": _ann("i", [A], ["a"]), "j": _ann("j", [B], ["a"])}
    a = evaluate_detections([_det("i", "a", 1.0, A)], gt, ["a"]).per_class["a"]
    assert a.npos == 2
    np.testing.assert_allclose(a.recall, [0.5])
    assert a.ap == pytest.approx(6 / 11)


def test_default_classes_come_from_the_ground_truth() -> None:
    gt = {"i": _ann("i", [A, B], ["b", "a"])}
    assert evaluate_detections([], gt).classes == ["a", "b"]


@pytest.mark.parametrize(
    ("det", "message"),
    [
        (_det("zzz", "a", 1.0, A), "image_id 'zzz' is not in the ground truth"),
        (_det("i", "dog", 1.0, A), "label 'dog' is not one of"),
        (_det("i", "a", float("nan"), A), "finite number as score"),
        (_det("i", "a", 1.0, [0, 0, 9]), "box \\[x1, y1, x2, y2\\]"),
        (_det("i", "a", 1.0, [9, 0, 0, 9]), "x2 >= x1"),
        ({"image_id": "i", "label": "a"}, "expected a mapping with"),
    ],
)
def test_malformed_detections_are_rejected(det: dict[str, object], message: str) -> None:
    gt = {"i": _ann("i", [A], ["a"])}
    with pytest.raises(ValueError, match=message):
        evaluate_detections([det], gt, ["a"])


def _write_voc(root: Path) -> None:
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "test.txt").write_text("img1\n")
    (root / "classes.txt").write_text("a\nb\n")
    (root / "Annotations" / "img1.xml").write_text(
        "<annotation><size><width>50</width><height>50</height><depth>3</depth></size>"
        "<object><name>a</name><difficult>0</difficult><bndbox><xmin>1</xmin><ymin>1</ymin>"
        "<xmax>10</xmax><ymax>10</ymax></bndbox></object></annotation>"
    )


def test_evaluate_against_a_dataset(tmp_path: Path) -> None:
    _write_voc(tmp_path)
    dataset = VocDataset(tmp_path, "test")
    # The XML box 1..10 (1-based) is 0..9 in our convention.
    result = evaluate_detections([_det("img1", "a", 0.3, A)], dataset)
    assert result.classes == ["a", "b"]
    assert result.per_class["a"].ap == pytest.approx(1.0)
    assert math.isnan(result.per_class["b"].ap)


def test_load_detections_json_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "dets.json"
    path.write_text(json.dumps([_det("img1", "a", 1, [0, 0, 9, 9]) | {"extra": 1}]))
    assert load_detections_json(path) == [
        {"image_id": "img1", "label": "a", "score": 1.0, "box": [0.0, 0.0, 9.0, 9.0]}
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "invalid JSON"),
        ('{"image_id": "x"}', "expected a JSON list of detections, got dict"),
        (
            '[{"image_id": 5, "label": "a", "score": 1, "box": [0, 0, 1, 1]}]',
            "detection 0: expected string image_id",
        ),
        (
            '[{"image_id": "x", "label": "a", "score": "high", "box": [0, 0, 1, 1]}]',
            "detection 0: expected a finite number",
        ),
        (
            '[{"image_id": "x", "label": "a", "score": 1, "box": "0 0 1 1"}]',
            "detection 0: expected box",
        ),
    ],
)
def test_load_detections_json_errors_name_the_file(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "dets.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        load_detections_json(path)
    assert str(path) in str(info.value)
