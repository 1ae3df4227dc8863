"""``spp eval``: run a model (or read a detections file) over a VOC split and score it.

Writes ``<out>/report.json`` (per-class AP, mAP, the kinds of the top-ranked false positives,
proposal recall at IoU 0.5 and 0.7, settings), precision-recall plots and, when it ran a model,
``<out>/detections.json`` (what ``spp compare`` reads); with ``record`` the
summary is also stored in the model's manifest under ``metrics`` (the weights, and so their
checksum, are untouched).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from app.data.proposal_cache import dataset_proposals
from app.data.voc import VocDataset
from app.evaluation.classification import classification_accuracy, single_object_ids
from app.evaluation.false_positives import false_positive_breakdown
from app.evaluation.plots import plot_precision_recall
from app.evaluation.recall import ProposalRecall, proposal_recall_for_annotations
from app.evaluation.report import build_report, write_report
from app.evaluation.voc_ap import evaluate_detections, load_detections_json
from app.inference.detector import DetectOptions, Detector, Precision, ScaleMode, ViewMode
from app.model.store import MANIFEST_FILE, load_model, read_manifest

log = logging.getLogger(__name__)

#: The detections ``evaluate`` writes beside its report when it ran a model.
DETECTIONS_FILE = "detections.json"
#: Sub-directory of the output that caches selective search when no cache directory is given.
CACHE_DIR = "cache"


def detect_split(
    detector: Detector,
    dataset: VocDataset,
    proposals: dict[str, Any],
    scales: ScaleMode,
    *,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """All detections of ``dataset`` as the documented JSON records, and mean stage ms."""
    options = DetectOptions(scales=scales, min_confidence=0.0)
    records: list[dict[str, Any]] = []
    totals: dict[str, float] = {}
    for image_id in tqdm(dataset.ids, desc=f"detect ({scales})", disable=not progress):
        [result] = detector.detect([dataset.load_rgb(image_id)], [proposals[image_id]], options)
        for stage, ms in result.timings_ms.items():
            totals[stage] = totals.get(stage, 0.0) + ms
        records.extend(
            {"image_id": image_id, "label": d.label, "score": d.score, "box": list(d.box)}
            for d in result.detections
        )
    mean = {stage: round(ms / max(1, len(dataset.ids)), 2) for stage, ms in totals.items()}
    return records, mean


def evaluate(
    *,
    voc_root: Path,
    split: str,
    store: Path,
    model_name: str | None,
    detections_file: Path | None,
    scales: ScaleMode,
    out_dir: Path,
    device: str | None = None,
    precision: Precision = "float32",
    record: bool = False,
    record_as: str | None = None,
    limit: int | None = None,
    workers: int = 2,
    progress: bool = True,
    command: str = "",
    proposals_cache: Path | None = None,
) -> dict[str, Any]:
    """Evaluate on ``voc_root``/``split``; ``record``: as ``<record_as or split>_<scales>``.
    ``command`` is the command line recorded in the report's settings (and with ``record``
    in the manifest); selective search is cached in ``proposals_cache`` (default
    ``out_dir/cache``: the dataset folder is only read)."""
    dataset = VocDataset(voc_root, split)
    if limit is not None:
        dataset.ids = dataset.ids[:limit]
    annotations = {i: dataset.annotation(i) for i in dataset.ids}
    settings: dict[str, Any] = {
        "voc_root": str(voc_root),
        "split": split,
        "images": len(dataset.ids),
        "command": command,
    }
    recall: ProposalRecall | None = None
    if detections_file is not None:
        detections = load_detections_json(detections_file)
        classes = list(dataset.classes)
        settings["detections_file"] = str(detections_file)
    else:
        assert model_name is not None
        model = load_model(store, model_name)
        detector = Detector(model, device, precision)
        classes = model.classes
        started = time.perf_counter()
        proposals = dataset_proposals(
            dataset,
            model.manifest.proposals,
            proposals_cache or out_dir / CACHE_DIR,
            ids=dataset.ids,
            workers=workers,
            progress=progress,
        )
        recall = proposal_recall_for_annotations(proposals, annotations)
        detections, stage_ms = detect_split(detector, dataset, proposals, scales, progress=progress)
        settings.update(
            model=model.name,
            version=model.version,
            scales=scales,
            device=str(detector.device),
            precision=precision,
            mean_stage_ms=stage_ms,
            seconds=round(time.perf_counter() - started, 1),
        )
    result = evaluate_detections(detections, annotations, classes)
    out_dir.mkdir(parents=True, exist_ok=True)
    if detections_file is None:  # `spp compare` reads it
        (out_dir / DETECTIONS_FILE).write_text(json.dumps(detections))
    plot = plot_precision_recall(result, out_dir / "precision_recall.png")
    report = build_report(
        result, recall=recall, settings=settings, plots={"precision_recall": plot.name}
    )
    report["detection"]["false_positives"] = false_positive_breakdown(
        result, detections, annotations
    )
    report["summary"] = summary = _summary(report, scales if detections_file is None else None)
    write_report(out_dir / "report.json", report)
    if record and model_name is not None:
        key = f"{record_as or split}_{scales}" + ("" if precision == "float32" else f"_{precision}")
        _record_metrics(store / model_name, key, {**summary, "command": settings["command"]})
    return report


def _summary(report: dict[str, Any], scales: ScaleMode | None) -> dict[str, Any]:
    """The figures ``spp eval`` prints and ``--record`` keeps."""
    recall = report["proposal_recall"]
    return {
        "map": report["detection"]["map"],
        "ap": report["detection"]["ap"],
        "proposal_recall": recall["recall"] if recall else None,
        "images": report["settings"]["images"],
        "scales": scales,
    }


def evaluate_classification(
    *,
    voc_root: Path,
    split: str,
    store: Path,
    model_name: str,
    out_dir: Path,
    device: str | None = None,
    precision: Precision = "float32",
    record: bool = False,
    record_as: str | None = None,
    size: int | None = None,
    views: ViewMode = "full",
    workers: int = 2,
    progress: bool = True,
    command: str = "",
    proposals_cache: Path | None = None,
) -> dict[str, Any]:
    """Top-1 whole-image accuracy on the split's single-object images; returns the report.
    ``size`` overrides the model's ``classify_size`` (the report's settings say which ran);
    ``record`` keys the manifest's entry by ``record_as`` (default: the split); ``command`` is
    the command line recorded with the result; ``proposals_cache`` as :func:`evaluate`'s."""
    dataset = VocDataset(voc_root, split)
    detector = Detector(load_model(store, model_name), device, precision)
    proposals = None
    if views == "detect":
        proposals = dataset_proposals(
            dataset,
            detector.model.manifest.proposals,
            proposals_cache or out_dir / CACHE_DIR,
            ids=single_object_ids(dataset),
            workers=workers,
            progress=progress,
        )
    result = classification_accuracy(
        detector, dataset, size=size, views=views, proposals=proposals, progress=progress
    )
    settings = {
        "voc_root": str(voc_root),
        "size": size or detector.model.manifest.preprocess.classify_size,
        "views": views,
        "precision": precision,
    }
    report = {"summary": {**result, "command": command}, "settings": settings}
    write_report(out_dir / "classification.json", report)
    if record:
        key = f"{record_as or split}_classify" + ("" if size is None else f"_{size}")
        key += "" if views == "full" else f"_{views}_views"
        key += "" if precision == "float32" else f"_{precision}"
        _record_metrics(store / model_name, key, report["summary"])
    return report


def _record_metrics(model_dir: Path, key: str, metrics: dict[str, Any]) -> None:
    """Store ``metrics`` under ``manifest.metrics[key]`` (validated by re-reading)."""
    path = model_dir / MANIFEST_FILE
    raw = json.loads(path.read_text())
    raw.setdefault("metrics", {})[key] = metrics
    path.write_text(json.dumps(raw, indent=2) + "\n")
    read_manifest(model_dir)
    log.info("recorded %s in %s", key, path)
