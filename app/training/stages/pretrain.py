"""Pre-training: classification pre-training of conv1..conv5 + fc6/fc7/fc8 (docs/model.md §7.1).

The paper pre-trains on ImageNet; here the data are object-centred crops of the training
split (each object at a random context ratio, random shift and flip), which also prepares the
network for whole-image classification of images holding one shape. Multi-size training
(paper section 2.3): every crop is made at 224 px; odd epochs feed the same crops resized to
180 px, so the two sizes share all weights and alternate by epoch.

Departures from the paper, stated, because the network starts from random weights and must
converge in minutes on a CPU: BatchNorm after each conv during this stage only, folded exactly
into the convs at the end (``app.training.batchnorm``; the shipped trunk is plain ZF-5), AdamW
with a cosine learning-rate schedule, a context curriculum (objects first fill their crops,
later sit small in wide ones), and warm-up epochs at half resolution (the same two-size
alternation at 112/90 px) before the paper's 224/180 epochs.

One more departure, optional (``background_per_image``): pre-training can also see *background
windows* (crops that hold no whole object: clutter, texture, pieces of shapes) under a
(K+1)-th class. The paper's ImageNet pre-training has no such class; here the negatives that
fool the detector are irregular polygons and clutter (``app.data.shapes``), and the conv
layers, frozen after this stage, only learn to tell them from the classes if pre-training shows
them. ``classify`` drops the background output (``app.inference.classify.object_probabilities``).
Random squares rarely land on those polygons; ``background_source: proposals`` draws the
windows from the image's selective-search proposals instead, which frame them.

An optional finishing phase (``finish_epochs``, default 0) follows the cosine schedule: more
epochs at the paper's two sizes and the curriculum's final context, under a cosine of their own
that restarts at ``finish_lr``. The schedule of the first ``epochs`` epochs does not depend on
it, so a run that adds a finishing phase can resume from the checkpoint of one that had none
(copied into a new work directory: the stale-output guard treats the change like any other
change to pre-training).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from app.model.config import PreprocessConfig
from app.model.net import SppNet
from app.model.store import load_model
from app.training.batchnorm import attach_batchnorm, fold_batchnorm
from app.training.checkpoint import load_checkpoint, save_checkpoint
from app.training.recipe import PretrainConfig
from app.training.stages.pretrain_samples import LabelledObject

log = logging.getLogger(__name__)


def object_crop(
    image: np.ndarray,
    box: Sequence[float],
    rng: np.random.Generator,
    size: int,
    context: tuple[float, float],
) -> np.ndarray:
    """A square ``size`` x ``size`` RGB crop around ``box``: the object's longer side covers a
    uniform fraction in ``context`` of the crop, shifted at random inside it, flipped half the
    time; pixels outside the image replicate the border."""
    x1, y1, x2, y2 = box
    object_side = max(x2 - x1, y2 - y1) + 1.0
    side = object_side / rng.uniform(*context)
    slack = (side - object_side) / 2.0
    cx = (x1 + x2) / 2.0 + rng.uniform(-slack, slack)
    cy = (y1 + y2) / 2.0 + rng.uniform(-slack, slack)
    s = size / side
    matrix = np.array([[s, 0.0, -s * (cx - side / 2.0)], [0.0, s, -s * (cy - side / 2.0)]])
    crop = cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop)


def epoch_context(config: PretrainConfig, epoch: int) -> tuple[float, float]:
    """The context range of ``epoch``: its lower bound goes linearly from ``context_start``
    (objects filling the crop, which the network learns first) to ``context[0]`` (objects
    small in a wide crop, as in whole-image classification)."""
    progress = min(1.0, epoch / max(1, config.epochs - 1))
    low = config.context_start + (config.context[0] - config.context_start) * progress
    return low, config.context[1]


def epoch_size(config: PretrainConfig, epoch: int) -> tuple[int, int]:
    """``(crop size, input size)`` of ``epoch``: the sizes alternate by epoch; warm-up epochs
    use half of each (same two-size scheme at a quarter of the cost)."""
    divisor = 2 if epoch < config.warmup_epochs else 1
    size = config.sizes[epoch % len(config.sizes)] // divisor
    return config.sizes[0] // divisor, size


def step_lr(config: PretrainConfig, epoch: int, step: int, steps_per_epoch: int) -> float:
    """The learning rate of ``step`` of ``epoch``: a cosine from ``lr`` to 0 over ``epochs``,
    then, in the finishing phase, a cosine from ``finish_lr`` to 0 over ``finish_epochs``."""
    if epoch < config.epochs:
        peak, done, length = config.lr, epoch, config.epochs
    else:
        peak, done, length = config.finish_lr, epoch - config.epochs, config.finish_epochs
    return (
        peak
        * 0.5
        * (1 + math.cos(math.pi * (done * steps_per_epoch + step) / (length * steps_per_epoch)))
    )


def batch_to_tensor(crops: Sequence[np.ndarray], preprocess: PreprocessConfig) -> torch.Tensor:
    """``B`` RGB uint8 crops ``[S, S, 3]`` -> ``Tensor[B, 3, S, S]`` normalised like inference."""
    x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float()
    if preprocess.channel_order == "BGR":
        x = x.flip(1)
    mean = torch.tensor(preprocess.pixel_mean).view(1, 3, 1, 1)
    return x - mean


def pretrain(
    net: SppNet,
    images: Sequence[np.ndarray],
    objects: Sequence[LabelledObject],
    config: PretrainConfig,
    preprocess: PreprocessConfig,
    checkpoint: Path,
    *,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Train ``net.trunk``, ``net.cls_head`` and ``net.cls_fc8`` in place; resumable.

    Returns the per-epoch log ``[{epoch, size, loss, accuracy, seconds}]``.
    """
    attach_batchnorm(net.trunk)
    params = [*net.trunk.parameters(), *net.cls_head.parameters(), *net.cls_fc8.parameters()]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(objects) * config.crops_per_object / config.batch_size)
    state = load_checkpoint(checkpoint, net, optimizer) or {"epoch": 0, "history": []}
    history: list[dict[str, float]] = state["history"]
    net.train()
    for epoch in range(state["epoch"], config.total_epochs):
        crop_size, size = epoch_size(config, epoch)
        context = epoch_context(config, epoch)
        rng = np.random.default_rng([config.seed, epoch])
        order = np.concatenate(
            [rng.permutation(len(objects)) for _ in range(config.crops_per_object)]
        )
        started, loss_sum, correct, seen = time.perf_counter(), 0.0, 0, 0
        bar = tqdm(
            range(steps_per_epoch),
            desc=f"pretrain {epoch + 1}/{config.total_epochs} @{size}",
            disable=not progress,
        )
        for step in bar:
            picked = [
                objects[i] for i in order[step * config.batch_size : (step + 1) * config.batch_size]
            ]
            crops = [
                object_crop(
                    images[o.image_index],
                    o.box,
                    rng,
                    crop_size,
                    context if o.context is None else (o.context, o.context),
                )
                for o in picked
            ]
            if size != crop_size:
                crops = [cv2.resize(c, (size, size), interpolation=cv2.INTER_LINEAR) for c in crops]
            x = batch_to_tensor(crops, preprocess)
            y = torch.tensor([o.class_id for o in picked])
            lr = step_lr(config, epoch, step, steps_per_epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            logits = net.classify_logits(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach()) * len(picked)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(picked)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        record = {
            "epoch": epoch + 1,
            "size": size,
            "loss": loss_sum / seen,
            "accuracy": correct / seen,
            "seconds": time.perf_counter() - started,
        }
        history.append(record)
        log.info("pretrain %s", record)
        save_checkpoint(checkpoint, net, optimizer, {"epoch": epoch + 1, "history": history})
    net.eval()
    fold_batchnorm(net.trunk)
    return history


#: The tensors pre-training trains, by state-dict prefix (what a warm start copies).
PRETRAINED_PREFIXES = ("trunk.", "cls_head.", "cls_fc8.")


def warm_start(net: SppNet, model_dir: Path, classes: Sequence[str]) -> str:
    """Pre-training replaced by an earlier model (``pretrain.init_from``): copy its trunk and
    classification head into ``net``; returns that model's weights SHA-256.

    Raises:
        ValueError: the model's classes or network shape differ from ``net``'s.
    """
    source = load_model(model_dir.parent, model_dir.name)
    if list(source.manifest.classes) != list(classes):
        raise ValueError(
            f"{model_dir}: classes {source.manifest.classes} differ from the data's {classes}"
        )
    if source.net.config != net.config:
        raise ValueError(
            f"{model_dir}: its network {source.net.config} differs from the recipe's {net.config}"
        )
    state = {k: v for k, v in source.net.state_dict().items() if k.startswith(PRETRAINED_PREFIXES)}
    net.load_state_dict(state, strict=False)
    net.eval()
    return source.manifest.weights_sha256
