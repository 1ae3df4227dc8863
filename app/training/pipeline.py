"""The whole training pipeline of SPEC section 7, stage by stage, resumable.

``<work>/`` holds everything a run produces: ``data/`` (a generated dataset), ``pretrain-data/``
(stage 1's extra images), ``proposals/``, ``pretrain/`` (checkpoints), ``conv5/`` (the cache
of stage 2; ``proposals/extra/`` and ``conv5/extra/`` for the extra images that stages 3-5
also train on, ``data.detect_extra``), ``detect/`` (the fine-tuned head, SVMs, regressors
and calibration of stages 3-5), ``log.jsonl`` (losses and stage summaries). A stage whose
output exists is skipped, so a cut-off run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from app.data.proposal_cache import dataset_proposals
from app.data.shapes import generate_shapes_dataset
from app.data.voc import VocDataset
from app.inference.detector import DetectOptions, Detector
from app.model.config import ModelConfig, ProposalConfig
from app.model.net import SppNet
from app.model.store import Manifest, SppModel, save_model
from app.ops.boxes import encode_boxes
from app.training.calibration import fit_platt, match_detections
from app.training.conv5_cache import Conv5Cache
from app.training.finetune import (
    FG_IOU,
    FinetuneConfig,
    WindowSamples,
    finetune,
    pick_windows,
)
from app.training.pretrain import LabelledObject, PretrainConfig, pretrain, samples_of_image
from app.training.regression import train_box_regressor
from app.training.svm import SvmConfig, train_class_svm
from app.training.windows import LabelledWindows, label_windows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataConfig:
    kind: str = "shapes"  # "shapes" (generated into <work>/data) or "voc" (read from root)
    seed: int = 1
    train: int = 400
    val: int = 100
    pretrain_extra: int = 0  # kind "shapes": extra images (seed + 1000) for stage 1
    detect_extra: int = 0  # the first N of those also train stages 3-5 (<= pretrain_extra)
    root: str | None = None
    train_split: str = "train"
    val_split: str = "val"


@dataclass(frozen=True)
class TrainConfig:
    """A whole recipe, read from YAML (unknown keys are an error)."""

    name: str
    version: str
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: dict[str, Any] = field(default_factory=dict)
    proposals: dict[str, Any] = field(default_factory=dict)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    svm: SvmConfig = field(default_factory=SvmConfig)
    bbox_alpha: float = 1000.0
    workers: int = 2

    @classmethod
    def from_yaml(cls, path: Path) -> TrainConfig:
        raw = yaml.safe_load(path.read_text())
        try:
            return cls(
                **{
                    k: v for k, v in raw.items() if k not in {"data", "pretrain", "finetune", "svm"}
                },
                data=DataConfig(**raw.get("data", {})),
                pretrain=PretrainConfig(**_tuples(raw.get("pretrain", {}))),
                finetune=FinetuneConfig(**raw.get("finetune", {})),
                svm=SvmConfig(**raw.get("svm", {})),
            )
        except TypeError as exc:
            raise ValueError(f"{path}: {exc}") from None


#: Work-directory outputs that each recipe section feeds, relative to ``--work``: a section
#: whose value differs from the recipe those outputs were made with makes them stale. A
#: ``section.field`` key is compared on its own, and the section's key ignores that field.
_STAGE_OUTPUTS: dict[str, tuple[str, ...]] = {
    "data": (
        "data",
        "data-summary.json",
        "pretrain-data",
        "proposals",
        "pretrain",
        "conv5",
        "detect",
    ),
    "model": ("pretrain", "conv5", "detect"),
    "pretrain": ("pretrain", "conv5", "detect"),
    "proposals": ("proposals", "detect"),
    "finetune": ("detect",),
    "data.detect_extra": ("detect",),
    "svm": ("detect/svm.safetensors",),
}

#: Where a work directory keeps the recipe its outputs were made with.
RECIPE_FILE = "recipe.json"


class StaleWorkError(ValueError):
    """The recipe changed in a section whose outputs are still in the work directory."""


def check_work_recipe(work: Path, recipe: dict[str, Any]) -> None:
    """Refuse to resume ``work`` with a recipe that would silently reuse stale outputs.

    ``recipe`` is the JSON form of the recipe. A work directory records it in
    :data:`RECIPE_FILE`; when a section of :data:`_STAGE_OUTPUTS` differs from the recorded one
    and an output it feeds still exists, :class:`StaleWorkError` names what to delete. Once
    those are gone (or nothing differs) the current recipe is recorded and the run may go on.
    """
    path = work / RECIPE_FILE
    if path.is_file():
        recorded = _with_defaults(json.loads(path.read_text()))
        current = _with_defaults(recipe)
        changed = [s for s in _STAGE_OUTPUTS if _part(recorded, s) != _part(current, s)]
        stale = sorted({o for s in changed for o in _STAGE_OUTPUTS[s] if (work / o).exists()})
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
    defaults: dict[str, Any] = {
        "data": DataConfig(),
        "pretrain": PretrainConfig(),
        "finetune": FinetuneConfig(),
        "svm": SvmConfig(),
    }
    filled = dict(recipe)
    for section, default in defaults.items():
        if isinstance(recipe.get(section), dict):
            filled[section] = {**_jsonable(asdict(default)), **recipe[section]}
    return filled


def _part(recipe: dict[str, Any], key: str) -> Any:
    """What :func:`check_work_recipe` compares for one key of :data:`_STAGE_OUTPUTS`."""
    section, _, name = key.partition(".")
    value = recipe.get(section)
    if name:
        return value.get(name) if isinstance(value, dict) else None
    if isinstance(value, dict):
        own = {k.partition(".")[2] for k in _STAGE_OUTPUTS if k.startswith(section + ".")}
        return {k: v for k, v in value.items() if k not in own}
    return value


def _tuples(d: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


class Pipeline:
    """Runs the stages of one recipe in one work directory."""

    def __init__(
        self, config: TrainConfig, work: Path, *, progress: bool = True, device: str = "cpu"
    ) -> None:
        self.config = config
        self.work = work
        self.progress = progress
        self.device = device
        self.recipe: dict[str, Any] = _jsonable(asdict(config))
        check_work_recipe(work, self.recipe)
        self.model_config = ModelConfig(num_classes=1, **config.model)  # num_classes fixed below
        self.proposal_config = ProposalConfig(**config.proposals)

    # -- bookkeeping -------------------------------------------------------------------------
    def log_event(self, event: str, **fields: Any) -> None:
        """Append one JSON line to ``<work>/log.jsonl``."""
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "event": event, **fields}
        with (self.work / "log.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")
        log.info("%s %s", event, fields)

    @property
    def voc_root(self) -> Path:
        data = self.config.data
        return Path(data.root) if data.kind == "voc" and data.root else self.work / "data"

    def prepare_data(self) -> dict[str, Any]:
        """Generate the shapes dataset once (kind ``shapes``); return its summary."""
        summary_path = self.work / "data-summary.json"
        if summary_path.is_file():
            summary: dict[str, Any] = json.loads(summary_path.read_text())
            return summary
        data = self.config.data
        if data.kind == "shapes":
            summary = generate_shapes_dataset(
                self.voc_root,
                seed=data.seed,
                n_train=data.train,
                n_val=data.val,
                n_test=0,
                progress=self.progress,
                workers=self.config.workers,
                overwrite=True,
            )
        elif data.kind == "voc":
            digest = hashlib.sha256()
            for path in sorted((self.voc_root / "Annotations").glob("*.xml")):
                digest.update(path.read_bytes())
            summary = {"root": str(self.voc_root), "annotations_sha256": digest.hexdigest()}
        else:
            raise ValueError(f"data.kind must be 'shapes' or 'voc', got {data.kind!r}")
        summary_path.write_text(json.dumps(summary, indent=1, default=str))
        self.log_event(
            "data", **{k: v for k, v in summary.items() if isinstance(v, str | int | float)}
        )
        return summary

    def dataset(self, split: str) -> VocDataset:
        return VocDataset(self.voc_root, split)

    def new_net(self, classes: list[str]) -> SppNet:
        config = ModelConfig(
            **{
                **asdict_config(self.model_config),
                "num_classes": len(classes),
                "cls_background": self.config.pretrain.background_per_image > 0,
            }
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.pretrain.seed)
            return SppNet(config)

    def wrap(self, net: SppNet, classes: list[str]) -> SppModel:
        """A :class:`SppModel` around an in-training network (no weights file yet)."""
        manifest = Manifest(
            name=self.config.name,
            version=self.config.version,
            classes=classes,
            model=net.config,
            proposals=self.proposal_config,
            weights_sha256="",
        )
        return SppModel(manifest=manifest, net=net)

    def pretrain_extra_datasets(self) -> list[VocDataset]:
        """Extra generated images for stage 1 only (the analogue of ImageNet pre-training)."""
        data = self.config.data
        if data.kind != "shapes" or data.pretrain_extra <= 0:
            return []
        root = self.work / "pretrain-data"
        if not (root / "shapes.json").is_file():
            generate_shapes_dataset(
                root,
                seed=data.seed + 1000,
                n_train=data.pretrain_extra,
                n_val=0,
                n_test=0,
                progress=self.progress,
                workers=self.config.workers,
                overwrite=True,
            )
        return [VocDataset(root, "train")]

    # -- stage 1 -----------------------------------------------------------------------------
    def run_pretrain(self) -> SppNet:
        """Stage 1 (resumable per epoch); returns the pre-trained network."""
        self.prepare_data()
        train = self.dataset(self.config.data.train_split)
        classes = list(train.classes)
        net = self.new_net(classes)
        images: list[np.ndarray] = []
        objects: list[LabelledObject] = []
        background_rng = np.random.default_rng([self.config.pretrain.seed, 1])
        for dataset, sub in [
            (train, Path()),
            *((d, Path("extra")) for d in self.pretrain_extra_datasets()),
        ]:
            proposals = self._background_candidates(dataset, sub)
            for image_id in tqdm(dataset.ids, desc="load images", disable=not self.progress):
                ann = dataset.annotation(image_id)
                image = dataset.load_rgb(image_id)
                objects += samples_of_image(
                    len(images),
                    image.shape[:2],
                    ann.boxes,
                    [classes.index(label) for label in ann.labels],
                    ann.difficult,
                    self.config.pretrain.scene_views,
                    background=self.config.pretrain.background_per_image,
                    background_class=len(classes),
                    rng=background_rng,
                    candidates=None if proposals is None else proposals[image_id],
                )
                images.append(image)
        self.log_event("pretrain-start", images=len(images), objects=len(objects))
        history = pretrain(
            net,
            images,
            objects,
            self.config.pretrain,
            self.wrap(net, classes).manifest.preprocess,
            self.work / "pretrain" / "checkpoint",
            progress=self.progress,
        )
        self.log_event("pretrain-done", last=history[-1] if history else None)
        return net

    def _background_candidates(
        self, dataset: VocDataset, sub: Path
    ) -> dict[str, np.ndarray] | None:
        """The proposals stage-1 background windows are drawn from (``background_source:
        proposals``; cached where stages 3-5 look for them), or None for random squares."""
        config = self.config.pretrain
        if config.background_per_image <= 0 or config.background_source == "random":
            return None
        return self._proposals(dataset, sub)

    def _proposals(self, dataset: VocDataset, sub: Path) -> dict[str, np.ndarray]:
        """Selective search on ``dataset``, cached under ``<work>/proposals/<sub>``."""
        return dataset_proposals(
            dataset,
            self.proposal_config,
            self.work / "proposals" / sub,
            workers=self.config.workers,
            progress=self.progress,
        )

    # -- stages 2-5 --------------------------------------------------------------------------
    def detection_images(self, detector: Detector, classes: list[str]) -> list[DetectionImages]:
        """The images stages 3-5 train on: the train split, then the first
        ``data.detect_extra`` stage-1 extra images (own proposal and conv5 caches, since
        their ids repeat the train split's)."""
        sets = [(self.dataset(self.config.data.train_split), Path())]
        extra = self.config.data.detect_extra
        if extra > 0:
            found = self.pretrain_extra_datasets()
            if not found or len(found[0]) < extra:
                raise ValueError(
                    f"data.detect_extra = {extra} needs at least as many data.pretrain_extra "
                    "images (kind shapes)"
                )
            found[0].ids = found[0].ids[:extra]
            sets.append((found[0], Path("extra")))
        parts = []
        for dataset, sub in sets:
            proposals = self._proposals(dataset, sub)
            windows = {
                i: label_windows(dataset.annotation(i), proposals[i], classes) for i in dataset.ids
            }
            parts.append(
                DetectionImages(dataset, windows, Conv5Cache(self.work / "conv5" / sub, detector))
            )
        return parts

    def run_detection(self, out: Path) -> Manifest:
        """Stages 2-5 and calibration on top of stage 1; writes the final model to ``out``."""
        net = self.run_pretrain()
        train = self.dataset(self.config.data.train_split)
        val = self.dataset(self.config.data.val_split)
        classes = list(train.classes)
        model = self.wrap(net, classes)
        detector = Detector(model, self.device)
        parts = self.detection_images(detector, classes)
        multi = tuple(model.manifest.detection.multi_scales)
        single = (model.manifest.detection.single_scale,)
        detect_dir = self.work / "detect"
        detect_dir.mkdir(exist_ok=True)

        # Stage 3: fine-tuning samples (stage 2 fills the conv5 cache on the way).
        head_file = detect_dir / "det_head.safetensors"
        samples = self._finetune_samples(parts, detector, (multi, single))
        if head_file.is_file():
            tensors = load_file(str(head_file))
            net.det_head.load_state_dict(
                {k[5:]: v for k, v in tensors.items() if k.startswith("head.")}
            )
            net.det_fc8.load_state_dict(
                {k[4:]: v for k, v in tensors.items() if k.startswith("fc8.")}
            )
        else:
            history = finetune(net, samples, self.config.finetune, progress=self.progress)
            self.log_event("finetune-done", history=history)
            save_file(
                {
                    **{f"head.{k}": v for k, v in net.det_head.state_dict().items()},
                    **{f"fc8.{k}": v for k, v in net.det_fc8.state_dict().items()},
                },
                str(head_file),
            )

        # Stage 5 (needs only the pooled samples): box regressors.
        self._train_regressors(net, samples, len(classes))
        del samples  # the SVM features of every window take the memory next
        # Stage 4: SVMs with hard-negative mining.
        self._train_svms(net, parts, detector, (multi, single), classes)
        # Calibration on the val split.
        self._calibrate(detector, val, classes)
        manifest = save_model(
            net,
            out,
            name=self.config.name,
            version=self.config.version,
            classes=classes,
            description=self.config.description.strip(),
            proposals=self.proposal_config,
            training=self.provenance(),
        )
        self.log_event("model-saved", out=str(out), sha256=manifest.weights_sha256)
        return manifest

    def _finetune_samples(
        self,
        parts: list[DetectionImages],
        detector: Detector,
        variants: tuple[tuple[int, ...], ...],
    ) -> WindowSamples:
        config = self.config.finetune
        path = self.work / "detect" / "finetune-samples.safetensors"
        if path.is_file():
            return WindowSamples(**load_file(str(path)))
        rng = np.random.default_rng(config.seed)
        features, labels, targets, is_proposal = [], [], [], []
        for part, image_id in tqdm(
            _each_image(parts), desc="conv5 + fine-tune samples", disable=not self.progress
        ):
            w = part.windows[image_id]
            if len(w.gt_boxes) == 0:
                continue
            image = part.dataset.load_rgb(image_id)
            for scales in variants:
                index = torch.from_numpy(pick_windows(w.max_iou, config, rng))
                pooled, _ = detector.pooled_windows(
                    image, w.boxes[index], scales, conv5_fn=part.cache.bind(image_id)
                )
                positive = w.max_iou[index] >= FG_IOU
                gt_of = w.best_gt[index]
                features.append(pooled.half())
                labels.append(torch.where(positive, w.gt_labels[gt_of] + 1, 0))
                targets.append(encode_boxes(w.gt_boxes[gt_of], w.boxes[index]))
                is_proposal.append(~w.is_gt[index])
        samples = WindowSamples(
            features=torch.cat(features),
            labels=torch.cat(labels),
            targets=torch.cat(targets).float(),
            is_proposal=torch.cat(is_proposal),
        )
        save_file(asdict(samples), str(path))
        self.log_event(
            "finetune-samples",
            images=sum(len(part.dataset) for part in parts),
            windows=len(samples.labels),
            positives=int((samples.labels > 0).sum()),
        )
        return samples

    def _train_regressors(self, net: SppNet, samples: WindowSamples, num_classes: int) -> None:
        features = samples.features  # float16; converted per chunk and per class
        norms = torch.cat([f.float().norm(dim=1) for f in features.split(65536)])
        scale = 20.0 / float(norms.mean())
        net.bbox.feature_scale.fill_(scale)
        dim = features.shape[1]
        for c in range(num_classes):
            mine = (samples.labels == c + 1).nonzero().squeeze(1)
            weight, bias = train_box_regressor(
                (features[mine].float() * scale).numpy(),
                samples.targets[mine].numpy(),
                self.config.bbox_alpha,
            )
            net.bbox.weight[4 * c : 4 * c + 4] = torch.from_numpy(weight).view(4, dim)
            net.bbox.bias[4 * c : 4 * c + 4] = torch.from_numpy(bias)
        self.log_event("bbox-done", feature_scale=scale, samples=int((samples.labels > 0).sum()))

    def _train_svms(
        self,
        net: SppNet,
        parts: list[DetectionImages],
        detector: Detector,
        variants: tuple[tuple[int, ...], ...],
        classes: list[str],
    ) -> None:
        path = self.work / "detect" / "svm.safetensors"
        if path.is_file():
            stored = load_file(str(path))
            net.svm.weight.copy_(stored["weight"])
            net.svm.bias.copy_(stored["bias"])
            net.svm.feature_scale.copy_(stored["feature_scale"])
            return
        fc7_parts, overlap_parts, own_class_parts = [], [], []
        for part, image_id in tqdm(
            _each_image(parts), desc="fc7 features for SVMs", disable=not self.progress
        ):
            w = part.windows[image_id]
            image = part.dataset.load_rgb(image_id)
            # Overlap with any gt box of the class, difficult ones included (SPEC 7.4).
            overlap = torch.maximum(w.class_iou, w.class_iou_difficult)
            own = torch.where(w.is_gt & ~w.gt_difficult, w.gt_class, -1)
            for scales in variants:
                with torch.inference_mode():
                    pooled, _ = detector.pooled_windows(
                        image, w.boxes, scales, conv5_fn=part.cache.bind(image_id)
                    )
                    fc7_parts.append(net.det_head(pooled).half())
                overlap_parts.append(overlap.half())
                own_class_parts.append(own)
        fc7 = torch.cat(fc7_parts)
        del fc7_parts
        overlaps = torch.cat(overlap_parts)
        own_class = torch.cat(own_class_parts)
        scale = 20.0 / float(fc7[:: max(1, len(fc7) // 20000)].float().norm(dim=1).mean())
        net.svm.feature_scale.fill_(scale)
        stats = {}
        for c, name in enumerate(tqdm(classes, desc="SVMs", disable=not self.progress)):
            positives = (fc7[own_class == c].float() * scale).numpy()
            negative_rows = ((overlaps[:, c] < 0.3) & (own_class != c)).nonzero().squeeze(1)
            # Half precision, as stored: the miner scores them in float32 chunk by chunk.
            negatives = (fc7[negative_rows] * scale).numpy()
            weight, bias, stats[name] = train_class_svm(positives, negatives, self.config.svm)
            net.svm.weight[c] = torch.from_numpy(weight)
            net.svm.bias[c] = bias
        save_file(
            {
                "weight": net.svm.weight.detach().clone(),
                "bias": net.svm.bias.detach().clone(),
                "feature_scale": net.svm.feature_scale.detach().clone(),
            },
            str(path),
        )
        self.log_event("svm-done", feature_scale=scale, stats=stats)

    def _calibrate(self, detector: Detector, val: VocDataset, classes: list[str]) -> None:
        net = detector.net
        net.platt.a.fill_(1.0)
        net.platt.b.fill_(0.0)
        proposals = dataset_proposals(
            val,
            self.proposal_config,
            self.work / "proposals",
            workers=self.config.workers,
            progress=self.progress,
        )
        scores: list[list[float]] = [[] for _ in classes]
        truth: list[list[int]] = [[] for _ in classes]
        for image_id in tqdm(val.ids, desc="calibration (val)", disable=not self.progress):
            ann = val.annotation(image_id)
            [result] = detector.detect(
                [val.load_rgb(image_id)], [proposals[image_id]], DetectOptions(scales="single")
            )
            for c, name in enumerate(classes):
                found = [d for d in result.detections if d.class_id == c]
                if not found:
                    continue
                mine = np.array([label == name for label in ann.labels], dtype=bool)
                outcome = match_detections(
                    np.array([d.box for d in found]),
                    np.array([d.score for d in found]),
                    ann.boxes[mine],
                    np.asarray(ann.difficult, dtype=bool)[mine],
                )
                keep = outcome >= 0
                scores[c].extend(np.array([d.score for d in found])[keep].tolist())
                truth[c].extend(outcome[keep].tolist())
        fitted = {}
        for c, name in enumerate(classes):
            a, b = fit_platt(np.array(scores[c]), np.array(truth[c], dtype=bool))
            net.platt.a[c] = a
            net.platt.b[c] = b
            fitted[name] = {
                "a": a,
                "b": b,
                "detections": len(scores[c]),
                "true": int(np.sum(truth[c])),
            }
        self.log_event("calibration-done", platt=fitted)

    def provenance(self) -> dict[str, Any]:
        """What the manifest records about how the model was made."""
        summary_path = self.work / "data-summary.json"
        data_summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
        return {
            "command": shlex.join(["spp", *sys.argv[1:]]) if sys.argv else "",
            "recipe": self.recipe,
            "data": {k: v for k, v in data_summary.items() if k != "files"},
            "seeds": {
                "data": self.config.data.seed,
                "pretrain_data": self.config.data.seed + 1000,
                "pretrain": self.config.pretrain.seed,
                "finetune": self.config.finetune.seed,
                "svm": self.config.svm.seed,
            },
            "torch": torch.__version__,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }


@dataclass
class DetectionImages:
    """One set of training images of stages 3-5 with its labelled proposals and conv5 cache."""

    dataset: VocDataset
    windows: dict[str, LabelledWindows]
    cache: Conv5Cache


def _each_image(parts: list[DetectionImages]) -> list[tuple[DetectionImages, str]]:
    return [(part, image_id) for part in parts for image_id in part.dataset.ids]


def asdict_config(config: ModelConfig) -> dict[str, Any]:
    """The fields of a :class:`ModelConfig` as a plain dict."""
    return {name: getattr(config, name) for name in ModelConfig.__dataclass_fields__}


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
