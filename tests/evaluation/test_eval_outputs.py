"""Precision-recall plots and the JSON report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from app.data.voc import VocAnnotation
from app.evaluation.plots import plot_precision_recall, plot_precision_recall_per_class
from app.evaluation.recall import proposal_recall
from app.evaluation.report import build_report, write_report
from app.evaluation.voc_ap import EvaluationResult, evaluate_detections

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _result() -> tuple[EvaluationResult, VocAnnotation]:
    ann = VocAnnotation(
        "i",
        100,
        100,
        np.array([[0, 0, 9, 9], [20, 20, 29, 29]], np.float32),
        ["a", "b"],
        np.zeros(2, bool),
        np.zeros(2, bool),
    )
    dets = [
        {"image_id": "i", "label": "a", "score": 0.9, "box": [0, 0, 9, 9]},
        {"image_id": "i", "label": "a", "score": 0.5, "box": [50, 50, 60, 60]},
    ]
    return evaluate_detections(dets, {"i": ann}, ["a", "b", "c"]), ann


def test_plots_are_png_files(tmp_path: Path) -> None:
    result, _ = _result()
    path = plot_precision_recall(result, tmp_path / "plots" / "pr.png")
    assert path.read_bytes().startswith(PNG_MAGIC)
    per_class = plot_precision_recall_per_class(result, tmp_path / "per_class")
    assert [p.name for p in per_class] == ["pr_a.png", "pr_b.png", "pr_c.png"]
    assert all(p.read_bytes().startswith(PNG_MAGIC) for p in per_class)


def test_report_is_strict_json(tmp_path: Path) -> None:
    result, ann = _result()
    recall = proposal_recall([ann.boxes], [ann.boxes])
    report = build_report(result, recall=recall, settings={"split": "test"}, plots={"pr": "pr.png"})
    path = write_report(tmp_path / "report.json", report)
    loaded = json.loads(path.read_text())
    assert loaded["detection"]["map"] == 0.5  # a: AP 1, b: AP 0, c: no gt -> excluded
    assert loaded["detection"]["ap"] == {"a": 1.0, "b": 0.0, "c": None}
    assert loaded["detection"]["match"] == ">="
    assert loaded["proposal_recall"]["recall"] == {"0.5": 1.0, "0.7": 1.0}
    assert loaded["settings"] == {"split": "test"}
