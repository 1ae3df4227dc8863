"""The whole training pipeline of docs/model.md §7: the stages in order, in one work directory.

The stages, by name (:data:`STAGES`), in the order they run (docs/training.md has the
paper's numbers beside them):

* ``pretrain`` (``stages.pretrain``): classification pre-training of the trunk and fc6-fc8;
* ``conv_finetune`` (``stages.conv_finetune``, optional, off in the paper's recipe):
  conv3-conv5 with fc6-fc8 fine-tuned through the pyramid pooling, before conv5 is cached;
* ``conv5_cache`` and ``finetune`` (``stages.conv5_cache``, ``stages.finetune``): the pooled
  fine-tuning windows (conv5 once per image and scale, cached), then fc6/fc7 and a (K+1)-way
  fc8 on them;
* ``regression`` (``stages.regression``): box regressors from the same pooled windows;
* ``svm`` (``stages.svm``): one SVM per class on fc7, with hard-negative mining;
* ``calibrate`` (``stages.calibrate``): Platt scaling on the val split; then the model is saved.

Every stage's output lives in the work directory (``workdir``); one that exists is loaded
instead of recomputed, so a cut-off run resumes where it stopped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch

from app.data.proposal_cache import dataset_proposals
from app.data.voc import VocDataset
from app.inference.detector import Detector
from app.model.net import SppNet
from app.model.store import Manifest, SppModel, save_model
from app.training.datasets import (
    DetectionImages,
    detection_images,
    prepare_data,
    pretrain_extra_datasets,
    voc_root,
)
from app.training.provenance import provenance
from app.training.recipe import TrainConfig
from app.training.stages.calibrate import calibrate
from app.training.stages.conv_finetune import load_or_conv_finetune
from app.training.stages.finetune import load_or_collect_samples, load_or_finetune
from app.training.stages.pretrain import pretrain, warm_start
from app.training.stages.pretrain_samples import LabelledObject, dataset_samples
from app.training.stages.regression import train_regressors
from app.training.stages.svm import load_or_train_svms
from app.training.workdir import EXTRA, WorkDir, check_work_recipe

#: The training stages by name, in the order they run.
Stage = Literal[
    "pretrain", "conv_finetune", "conv5_cache", "finetune", "regression", "svm", "calibrate"
]
STAGES: tuple[Stage, ...] = (
    "pretrain",
    "conv_finetune",
    "conv5_cache",
    "finetune",
    "regression",
    "svm",
    "calibrate",
)


class Pipeline:
    """Runs the stages of one recipe in one work directory.

    Construction checks the work directory against the recipe (``StaleWorkError`` when a
    changed section's outputs are still there) and records the recipe in it.
    """

    def __init__(
        self, config: TrainConfig, work: Path, *, progress: bool = True, device: str = "cpu"
    ) -> None:
        self.config = config
        self.work = work
        self.progress = progress
        self.device = device
        self.recipe = config.to_json()
        check_work_recipe(work, self.recipe)
        self.proposal_config = config.proposals.to_config()

    @property
    def workdir(self) -> WorkDir:
        """The paths of :attr:`work`."""
        return WorkDir(self.work)

    def dataset(self, split: str) -> VocDataset:
        """One split of the recipe's VOC-layout dataset."""
        return VocDataset(voc_root(self.config, self.workdir), split)

    def begin(self, stage: Stage) -> None:
        """Log (and record in the work directory's log) that ``stage`` starts or resumes."""
        self.workdir.log_event("stage", stage=stage, of=len(STAGES))

    def new_net(self, classes: list[str]) -> SppNet:
        """A freshly initialised network for ``classes`` (seeded by ``pretrain.seed``), with
        a background output when pre-training shows background windows."""
        config = self.config.model.to_config(
            num_classes=len(classes),
            cls_background=self.config.pretrain.background_per_image > 0,
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
            detection=self.config.detection.to_config(),
            proposals=self.proposal_config,
            weights_sha256="",
        )
        return SppModel(manifest=manifest, net=net)

    def run_pretrain(self) -> SppNet:
        """Pre-training (resumable per epoch) on the train split and the extra images, or the
        warm start from ``pretrain.init_from``; returns the pre-trained network."""
        work, config = self.workdir, self.config
        self.begin("pretrain")
        prepare_data(config, work, progress=self.progress)
        train = self.dataset(config.data.train_split)
        classes = list(train.classes)
        net = self.new_net(classes)
        if config.pretrain.init_from is not None:
            sha256 = warm_start(net, Path(config.pretrain.init_from), classes)
            work.log_event("pretrain-warm-start", source=config.pretrain.init_from, sha256=sha256)
            return net
        sets = [
            (train, Path()),
            *((d, EXTRA) for d in pretrain_extra_datasets(config, work, progress=self.progress)),
        ]
        images: list[np.ndarray] = []
        objects: list[LabelledObject] = []
        background_rng = np.random.default_rng([config.pretrain.seed, 1])
        for dataset, sub in sets:
            new_images, new_objects = dataset_samples(
                dataset,
                classes,
                config.pretrain,
                background_rng,
                self._background_candidates(dataset, sub),
                first_index=len(images),
                progress=self.progress,
            )
            images += new_images
            objects += new_objects
        work.log_event("pretrain-start", images=len(images), objects=len(objects))
        preprocess = self.wrap(net, classes).manifest.preprocess
        history = pretrain(
            net,
            images,
            objects,
            config.pretrain,
            preprocess,
            work.pretrain_checkpoint,
            progress=self.progress,
        )
        work.log_event("pretrain-done", last=history[-1] if history else None)
        return net

    def _background_candidates(
        self, dataset: VocDataset, sub: Path
    ) -> dict[str, np.ndarray] | None:
        """The proposals pre-training's background windows are drawn from
        (``background_source: proposals``; cached where the detection stages look for them), or
        None for random squares."""
        config = self.config.pretrain
        if config.background_per_image <= 0 or config.background_source == "random":
            return None
        return self._proposals(dataset, self.workdir.proposals(sub))

    def _proposals(self, dataset: VocDataset, cache_dir: Path) -> dict[str, np.ndarray]:
        """Selective search on ``dataset`` (boxes ``[P, 4]`` by image id), cached in
        ``cache_dir``."""
        return dataset_proposals(
            dataset,
            self.proposal_config,
            cache_dir,
            workers=self.config.workers,
            progress=self.progress,
        )

    def detection_images(self, detector: Detector, classes: list[str]) -> list[DetectionImages]:
        """The image sets the detection stages train on (``datasets.detection_images``)."""
        return detection_images(
            self.config, self.workdir, detector, classes, progress=self.progress
        )

    def run_detection(self, out: Path, command: str = "") -> Manifest:
        """Every stage after pre-training (running or resuming that first); writes the final
        model to ``out``, named after that folder, with ``command`` as its recorded command
        line."""
        config, work, progress = self.config, self.workdir, self.progress
        net = self.run_pretrain()
        classes = list(self.dataset(config.data.train_split).classes)
        model = self.wrap(net, classes)
        detector = Detector(model, self.device)
        parts = self.detection_images(detector, classes)
        tuned = config.conv_finetune.iterations > 0
        if tuned:
            self.begin("conv_finetune")
            load_or_conv_finetune(
                net, model.manifest, parts, config.conv_finetune, work, progress=progress
            )
        detection = model.manifest.detection
        variants = (tuple(detection.multi_scales), (detection.single_scale,))
        work.detect.mkdir(exist_ok=True)
        # The regressors need only the fine-tuning samples: they run before the SVMs, whose fc7
        # features of every window take the memory next.
        self.begin("conv5_cache")
        samples = load_or_collect_samples(
            parts, detector, variants, config.finetune, work, progress=progress
        )
        self.begin("finetune")
        load_or_finetune(
            net, samples, config.finetune, work, progress=progress, from_detection_head=tuned
        )
        self.begin("regression")
        train_regressors(net, samples, len(classes), config.bbox_alpha, work)
        del samples
        self.begin("svm")
        load_or_train_svms(
            net, parts, detector, variants, classes, config.svm, work, progress=progress
        )
        self.begin("calibrate")
        val = self.dataset(config.data.val_split)
        val_proposals = self._proposals(val, work.proposals())
        calibrate(detector, val, val_proposals, classes, work, progress=progress)
        manifest = save_model(
            net,
            out,
            name=out.name,
            version=config.version,
            classes=classes,
            description=config.description.strip(),
            detection=model.manifest.detection,
            proposals=self.proposal_config,
            training=provenance(config, work, command),
        )
        work.log_event("model-saved", out=str(out), sha256=manifest.weights_sha256)
        return manifest
