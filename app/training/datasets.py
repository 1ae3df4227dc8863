"""The images each stage trains on: generated (or fingerprinted) once, with their proposals.

Pre-training trains on the train split plus ``data.pretrain_extra`` generated images; the
detection stages on the train split plus the first ``data.detect_extra`` of those extra
images; calibration on the val split. The generated train and val splits use the recipe's
``data.knobs``, the extra images ``data.extra_knobs`` (the same unless set). Proposals are cached
under ``<work>/proposals`` (``extra/`` for the extra images, whose ids repeat the train
split's).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.data.proposal_cache import dataset_proposals
from app.data.shapes import generate_shapes_dataset
from app.data.voc import VocDataset
from app.inference.detector import Detector
from app.training.provenance import annotations_sha256
from app.training.recipe import TrainConfig
from app.training.stages.conv5_cache import Conv5Cache
from app.training.windows import LabelledWindows, label_windows
from app.training.workdir import EXTRA, WorkDir


def voc_root(config: TrainConfig, work: WorkDir) -> Path:
    """The VOC-layout root of the train and val splits: ``data.root`` for kind ``voc``,
    else the generated ``<work>/data``."""
    data = config.data
    return Path(data.root) if data.kind == "voc" and data.root else work.data


def prepare_data(config: TrainConfig, work: WorkDir, *, progress: bool) -> dict[str, Any]:
    """Generate the shapes dataset once (kind ``shapes``) or fingerprint the VOC annotations
    (kind ``voc``); return the summary, kept in ``<work>/data-summary.json``."""
    if work.data_summary.is_file():
        summary: dict[str, Any] = json.loads(work.data_summary.read_text())
        return summary
    data, root = config.data, voc_root(config, work)
    if data.kind == "shapes":
        summary = generate_shapes_dataset(
            root,
            seed=data.seed,
            n_train=data.train,
            n_val=data.val,
            n_test=0,
            progress=progress,
            workers=config.workers,
            overwrite=True,
            knobs=data.knobs,
        )
    else:
        summary = {"root": str(root), "annotations_sha256": annotations_sha256(root)}
    work.data_summary.write_text(json.dumps(summary, indent=1, default=str))
    work.log_event("data", **{k: v for k, v in summary.items() if isinstance(v, str | int | float)})
    return summary


def pretrain_extra_datasets(
    config: TrainConfig, work: WorkDir, *, progress: bool
) -> list[VocDataset]:
    """Extra generated images for pre-training (the analogue of ImageNet pre-training), generated
    once with seed ``data.seed + 1000``; empty unless kind ``shapes`` asks for some."""
    data = config.data
    if data.kind != "shapes" or data.pretrain_extra <= 0:
        return []
    root = work.pretrain_data
    if not (root / "shapes.json").is_file():
        generate_shapes_dataset(
            root,
            seed=data.seed + 1000,
            n_train=data.pretrain_extra,
            n_val=0,
            n_test=0,
            progress=progress,
            workers=config.workers,
            overwrite=True,
            knobs=data.knobs_of_extra,
        )
    return [VocDataset(root, "train")]


@dataclass
class DetectionImages:
    """One set of training images of the detection stages with its labelled proposals and conv5
    cache."""

    dataset: VocDataset
    windows: dict[str, LabelledWindows]
    cache: Conv5Cache


def each_image(parts: list[DetectionImages]) -> list[tuple[DetectionImages, str]]:
    """Every ``(set, image id)`` of ``parts``, set by set in dataset order."""
    return [(part, image_id) for part in parts for image_id in part.dataset.ids]


def detection_images(
    config: TrainConfig,
    work: WorkDir,
    detector: Detector,
    classes: list[str],
    *,
    progress: bool,
) -> list[DetectionImages]:
    """The images the detection stages train on: the train split, then the first
    ``data.detect_extra`` pre-training extra images (own proposal and conv5 caches, since their
    ids repeat the train split's).

    Raises:
        ValueError: when ``data.detect_extra`` asks for more images than pre-training has.
    """
    sets = [(VocDataset(voc_root(config, work), config.data.train_split), Path())]
    extra = config.data.detect_extra
    if extra > 0:
        found = pretrain_extra_datasets(config, work, progress=progress)
        if not found or len(found[0]) < extra:
            raise ValueError(
                f"data.detect_extra = {extra} needs at least as many data.pretrain_extra "
                "images (kind shapes)"
            )
        found[0].ids = found[0].ids[:extra]
        sets.append((found[0], EXTRA))
    proposal_config = config.proposals.to_config()
    parts = []
    for dataset, sub in sets:
        proposals = dataset_proposals(
            dataset, proposal_config, work.proposals(sub), workers=config.workers, progress=progress
        )
        windows = {
            i: label_windows(dataset.annotation(i), proposals[i], classes) for i in dataset.ids
        }
        parts.append(DetectionImages(dataset, windows, Conv5Cache(work.conv5(sub), detector)))
    return parts
