"""What a trained model's manifest records about how it was made (``Manifest.training``)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import torch

from app.training.recipe import TrainConfig
from app.training.workdir import WorkDir


def annotations_sha256(voc_root: Path) -> str:
    """Hex SHA-256 over the bytes of every ``Annotations/*.xml`` under ``voc_root``, in name
    order: the fingerprint of a VOC-layout dataset's labels."""
    digest = hashlib.sha256()
    for path in sorted((voc_root / "Annotations").glob("*.xml")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def training_seeds(config: TrainConfig) -> dict[str, int]:
    """Every seed the recipe's stages draw from, by stage (the data seeds only when the data is
    generated)."""
    generated = (
        {"data": config.data.seed, "pretrain_data": config.data.seed + 1000}
        if config.data.kind == "shapes"
        else {}
    )
    return {
        **generated,
        "pretrain": config.pretrain.seed,
        "finetune": config.finetune.seed,
        "svm": config.svm.seed,
    }


def provenance(config: TrainConfig, work: WorkDir, command: str = "") -> dict[str, Any]:
    """The manifest's ``training`` record: ``command`` (the command line the caller wants
    recorded, e.g. the ``spp train`` invocation), the recipe's JSON form, the data summary
    (without its file list), the seeds, the torch version and the finishing time."""
    summary = json.loads(work.data_summary.read_text()) if work.data_summary.is_file() else {}
    return {
        "command": command,
        "recipe": config.to_json(),
        "data": {k: v for k, v in summary.items() if k != "files"},
        "seeds": training_seeds(config),
        "torch": torch.__version__,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
