"""The work directory of a training run: where each stage writes, and when outputs are stale.

``<work>/`` holds everything a run produces: ``data/`` (a generated dataset),
``data-summary.json``, ``pretrain-data/`` (pre-training's extra images), ``proposals/``,
``pretrain/`` (pre-training's checkpoints), ``conv-finetune/`` (conv fine-tuning, optional),
``conv5/`` (the conv5 cache; ``proposals/extra/`` and ``conv5/extra/`` for the extra images
that the detection stages also train on, ``data.detect_extra``),
``detect/`` (the fine-tuned head, SVMs, regressors and calibration),
``recipe.json`` (the recipe the outputs were made with) and ``log.jsonl`` (losses and stage
summaries). A stage whose output exists is skipped, so a cut-off run resumes where it stopped;
:func:`check_work_recipe` refuses outputs that a changed recipe section has made stale.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.training.recipe import (
    ConvFinetuneConfig,
    DataConfig,
    DetectionSection,
    FinetuneConfig,
    ModelSection,
    PretrainConfig,
    ProposalSection,
    SvmConfig,
)

log = logging.getLogger(__name__)

#: Where a work directory keeps the recipe its outputs were made with.
RECIPE_FILE = "recipe.json"
#: Sub-directory of ``proposals/`` and ``conv5/`` for the extra images of the detection
#: stages (their ids repeat the train split's).
EXTRA = Path("extra")

DATA = "data"
DATA_SUMMARY = "data-summary.json"
PRETRAIN_DATA = "pretrain-data"
PROPOSALS = "proposals"
PRETRAIN = "pretrain"
CONV_FINETUNE = "conv-finetune"
CONV5 = "conv5"
DETECT = "detect"
SVM_FILE = f"{DETECT}/svm.safetensors"

#: Work-directory outputs that each recipe section feeds, relative to ``--work``: a section
#: whose value differs from the recipe those outputs were made with makes them stale. A
#: ``section.field`` key is compared on its own, and the section's key ignores that field.
STAGE_OUTPUTS: dict[str, tuple[str, ...]] = {
    "data": (DATA, DATA_SUMMARY, PRETRAIN_DATA, PROPOSALS, PRETRAIN, CONV_FINETUNE, CONV5, DETECT),
    "model": (PRETRAIN, CONV_FINETUNE, CONV5, DETECT),
    "pretrain": (PRETRAIN, CONV_FINETUNE, CONV5, DETECT),
    "proposals": (PROPOSALS, CONV_FINETUNE, CONV5, DETECT),
    "detection": (CONV5, DETECT),
    "conv_finetune": (CONV_FINETUNE, CONV5, DETECT),
    "finetune": (DETECT,),
    "data.detect_extra": (CONV_FINETUNE, DETECT),
    "svm": (SVM_FILE,),
}


@dataclass(frozen=True)
class WorkDir:
    """The paths of one work directory (nothing is created until a stage writes)."""

    root: Path

    @property
    def data(self) -> Path:
        """Root of the generated VOC-layout dataset (data kind ``shapes``)."""
        return self.root / DATA

    @property
    def data_summary(self) -> Path:
        """JSON summary of the data: generator settings and hashes."""
        return self.root / DATA_SUMMARY

    @property
    def pretrain_data(self) -> Path:
        """Root of the extra generated images of pre-training."""
        return self.root / PRETRAIN_DATA

    def proposals(self, sub: Path = Path()) -> Path:
        """Selective-search cache of the images of ``sub`` (``Path()`` or :data:`EXTRA`)."""
        return self.root / PROPOSALS / sub

    @property
    def pretrain_checkpoint(self) -> Path:
        """Stem of pre-training's checkpoint (``.safetensors`` + ``.json``)."""
        return self.root / PRETRAIN / "checkpoint"

    @property
    def conv_finetune(self) -> Path:
        """Conv fine-tuning's output (the fine-tuned trunk and head) and checkpoints."""
        return self.root / CONV_FINETUNE

    def conv5(self, sub: Path = Path()) -> Path:
        """The conv5 cache of the images of ``sub`` (``Path()`` or :data:`EXTRA`)."""
        return self.root / CONV5 / sub

    @property
    def detect(self) -> Path:
        """Outputs of fine-tuning, the regressors, the SVMs and calibration."""
        return self.root / DETECT

    @property
    def finetune_samples(self) -> Path:
        """Pooled windows that fine-tuning and the regressors train on."""
        return self.detect / "finetune-samples.safetensors"

    @property
    def det_head(self) -> Path:
        """The fine-tuned fc6/fc7 and fc8 of fine-tuning."""
        return self.detect / "det_head.safetensors"

    @property
    def svm(self) -> Path:
        """The SVM weights, bias and feature scale."""
        return self.root / SVM_FILE

    @property
    def log_file(self) -> Path:
        """One JSON line per event (:meth:`log_event`)."""
        return self.root / "log.jsonl"

    def log_event(self, event: str, **fields: Any) -> None:
        """Append ``{"time", "event", **fields}`` as one JSON line to :attr:`log_file`."""
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "event": event, **fields}
        with self.log_file.open("a") as f:
            f.write(json.dumps(record) + "\n")
        log.info("%s %s", event, fields)


class StaleWorkError(ValueError):
    """The recipe changed in a section whose outputs are still in the work directory."""


def check_work_recipe(work: Path, recipe: dict[str, Any]) -> None:
    """Refuse to resume ``work`` with a recipe that would silently reuse stale outputs.

    ``recipe`` is the JSON form of the recipe. A work directory records it in
    :data:`RECIPE_FILE`; when a section of :data:`STAGE_OUTPUTS` differs from the recorded one
    and an output it feeds still exists, :class:`StaleWorkError` names what to delete. Once
    those are gone (or nothing differs) the current recipe is recorded and the run may go on.
    A field missing from either side counts as its default.
    """
    path = work / RECIPE_FILE
    if path.is_file():
        recorded = _with_defaults(json.loads(path.read_text()))
        current = _with_defaults(recipe)
        changed = [s for s in STAGE_OUTPUTS if _part(recorded, s) != _part(current, s)]
        stale = sorted({o for s in changed for o in STAGE_OUTPUTS[s] if (work / o).exists()})
        if stale:
            raise StaleWorkError(
                f"{work}: the recipe's {', '.join(changed)} section(s) changed since these "
                f"outputs were made; delete them to redo those stages: "
                + ", ".join(str(work / o) for o in stale)
            )
    work.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(recipe, indent=1, sort_keys=True))


def _with_defaults(recipe: dict[str, Any]) -> dict[str, Any]:
    """``recipe`` with each section's missing fields at their defaults, so that a recipe
    recorded before a field existed equals one that leaves the new field at its default."""
    defaults = {
        "model": ModelSection(),
        "proposals": ProposalSection(),
        "detection": DetectionSection(),
        "data": DataConfig(),
        "pretrain": PretrainConfig(),
        "conv_finetune": ConvFinetuneConfig(),
        "finetune": FinetuneConfig(),
        "svm": SvmConfig(),
    }
    filled = dict(recipe)
    for section, default in defaults.items():
        recorded = recipe.get(section, {})  # a section recorded before it existed: defaults
        if isinstance(recorded, dict):
            filled[section] = {**default.model_dump(mode="json"), **recorded}
    return filled


def _part(recipe: dict[str, Any], key: str) -> Any:
    """What :func:`check_work_recipe` compares for one key of :data:`STAGE_OUTPUTS`."""
    section, _, name = key.partition(".")
    value = recipe.get(section)
    if name:
        return value.get(name) if isinstance(value, dict) else None
    if isinstance(value, dict):
        own = {k.partition(".")[2] for k in STAGE_OUTPUTS if k.startswith(section + ".")}
        return {k: v for k, v in value.items() if k not in own}
    return value
