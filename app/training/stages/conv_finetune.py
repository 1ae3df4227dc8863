"""Conv fine-tuning, optional: fine-tune conv layers through the pyramid pooling (a departure).

The paper freezes the trunk after pre-training: SPP-net's fine-tuning trains fc6-fc8 only,
on pooled windows of cached conv5 maps. Fast R-CNN showed that back-propagating the window
loss through the pooling into conv3 and up is its largest single gain, and that is what this
stage does, between the labelled proposals (the conv5 cache's input) and the conv5 cache (its
output, computed afterwards from the fine-tuned trunk):

* every iteration draws ``images_per_batch`` images holding an object, each at a scale drawn
  from ``scales`` and flipped left-right half the time;
* per image, up to ``fg_fraction`` of ``windows_per_image`` are positives (IoU >= 0.5 with a
  ground-truth box, ground-truth boxes included, label = its class + 1), the rest background
  (IoU in [0.1, 0.5), label 0), the same ranges as fine-tuning;
* the image goes through the whole trunk (layers not in ``layers`` have no gradient, so no
  graph is built for them), its windows are projected onto conv5 by the manifest's rule and
  pooled by :func:`app.ops.spp.roi_spp` (whose backward pass routes each bin's gradient to its
  maximal cell), then fc6/fc7 (``det_head``, initialised from pre-training's ``cls_head``) and a new
  (K+1)-way ``det_fc8``, under a softmax loss;
* SGD with momentum, the learning rate a tenth after ``lr_step``; a checkpoint every
  ``checkpoint_every`` iterations, so a cut-off run resumes (draws are seeded per iteration).

Fine-tuning then starts from this stage's ``det_head`` and ``det_fc8`` instead of ``cls_head``.
The classification head (``cls_head``, ``cls_fc8``) is not trained here, so whole-image
``classify`` with ``views: full`` or ``multi`` sees a trunk it was not trained with;
``views: detect`` is unaffected.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm import tqdm

from app.inference.features import window_cells
from app.model.net import SppNet
from app.model.preprocess import image_to_tensor, resize_to_scale
from app.model.store import Manifest
from app.ops.spp import roi_spp
from app.training.checkpoint import load_checkpoint, save_checkpoint
from app.training.datasets import DetectionImages, each_image
from app.training.recipe import ConvFinetuneConfig
from app.training.stages.finetune import BG_IOU_LO, FG_IOU
from app.training.windows import LabelledWindows
from app.training.workdir import WorkDir

log = logging.getLogger(__name__)

#: Tensors of the network this stage changes, by state-dict prefix.
_TRAINED_PREFIXES = ("trunk.", "det_head.", "det_fc8.")


@dataclass(frozen=True)
class WindowBatch:
    """One image's sampled windows: ``boxes [R, 4]`` in its pixels and ``labels [R]`` long."""

    boxes: Tensor
    labels: Tensor


def sample_windows(
    windows: LabelledWindows, config: ConvFinetuneConfig, rng: np.random.Generator
) -> WindowBatch:
    """Up to ``fg_fraction * windows_per_image`` positives, the rest background, without
    replacement (fewer when the image has fewer)."""
    fg = (windows.max_iou >= FG_IOU).nonzero().squeeze(1).numpy()
    bg_mask = (windows.max_iou >= BG_IOU_LO) & (windows.max_iou < FG_IOU)
    bg = bg_mask.nonzero().squeeze(1).numpy()
    n_fg = min(len(fg), round(config.fg_fraction * config.windows_per_image))
    n_bg = min(len(bg), config.windows_per_image - n_fg)
    index = torch.from_numpy(
        np.concatenate(
            [rng.choice(fg, n_fg, replace=False), rng.choice(bg, n_bg, replace=False)]
        ).astype(np.int64)
    )
    positive = windows.max_iou[index] >= FG_IOU
    labels = torch.where(positive, windows.gt_labels[windows.best_gt[index]] + 1, 0)
    return WindowBatch(windows.boxes[index], labels)


def flip_boxes(boxes: Tensor, width: int) -> Tensor:
    """``(x1, y1, x2, y2)`` pixel boxes of an image ``width`` wide, mirrored left-right."""
    flipped = boxes.clone()
    flipped[:, 0] = (width - 1) - boxes[:, 2]
    flipped[:, 2] = (width - 1) - boxes[:, 0]
    return flipped


def pooled_image_windows(
    net: SppNet, manifest: Manifest, image: np.ndarray, boxes: Tensor, scale: int
) -> Tensor:
    """The pyramid-pooled conv5 vectors ``[R, D]`` of ``boxes`` in ``image`` (RGB uint8) at
    ``scale``, differentiable with respect to the trunk's trainable weights."""
    resized, fx, fy = resize_to_scale(image, scale, manifest.detection.max_long_side)
    x = image_to_tensor(resized, manifest.preprocess, torch.device("cpu"))
    conv5 = net.trunk(x)  # [1, C, H5, W5]
    feature_size = (int(conv5.shape[-2]), int(conv5.shape[-1]))
    cells = window_cells(manifest.windows, boxes, image.shape[:2], (fx, fy), feature_size)
    regions = torch.cat([torch.zeros_like(cells[:, :1]), cells], dim=1)
    return roi_spp(conv5, regions, manifest.model.levels)


def set_trainable(net: SppNet, layers: Sequence[str]) -> list[nn.Parameter]:
    """Freeze the whole network except the trunk's ``layers``, ``det_head`` and ``det_fc8``;
    returns the trainable parameters."""
    for p in net.parameters():
        p.requires_grad_(False)
    modules = [getattr(net.trunk, name) for name in layers] + [net.det_head, net.det_fc8]
    params = [p for m in modules for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    return params


def _iteration_loss(
    net: SppNet,
    manifest: Manifest,
    images: list[tuple[DetectionImages, str]],
    config: ConvFinetuneConfig,
    rng: np.random.Generator,
) -> Tensor:
    """The mean softmax loss over the windows of ``config.images_per_batch`` drawn images."""
    logits, labels = [], []
    for k in rng.choice(len(images), config.images_per_batch, replace=False):
        part, image_id = images[int(k)]
        image = part.dataset.load_rgb(image_id)
        batch = sample_windows(part.windows[image_id], config, rng)
        scale = int(config.scales[int(rng.integers(len(config.scales)))])
        boxes = batch.boxes
        if config.flip and rng.random() < 0.5:
            image = np.ascontiguousarray(image[:, ::-1])
            boxes = flip_boxes(boxes, image.shape[1])
        pooled = pooled_image_windows(net, manifest, image, boxes, scale)
        logits.append(net.det_fc8(net.det_head(pooled)))
        labels.append(batch.labels)
    return F.cross_entropy(torch.cat(logits), torch.cat(labels))


def _start(net: SppNet, config: ConvFinetuneConfig) -> torch.optim.SGD:
    """Initialise ``det_head`` from ``cls_head`` and a fresh ``det_fc8``; the optimiser."""
    net.det_head.load_state_dict(net.cls_head.state_dict())
    generator = torch.Generator().manual_seed(config.seed)
    torch.nn.init.normal_(net.det_fc8.weight, std=0.01, generator=generator)
    torch.nn.init.zeros_(net.det_fc8.bias)
    params = set_trainable(net, config.layers)
    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


def conv_finetune(
    net: SppNet,
    manifest: Manifest,
    parts: list[DetectionImages],
    config: ConvFinetuneConfig,
    work: WorkDir,
    *,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Train ``config.layers`` of ``net.trunk``, ``net.det_head`` and ``net.det_fc8`` in place
    (resumable from ``<work>/conv-finetune/checkpoint``); returns a loss log.

    Raises:
        ValueError: fewer images holding an object than ``images_per_batch``.
    """
    images = [(p, i) for p, i in each_image(parts) if len(p.windows[i].gt_boxes) > 0]
    if len(images) < config.images_per_batch:
        raise ValueError(
            f"conv_finetune needs at least {config.images_per_batch} images with objects, "
            f"got {len(images)}"
        )
    optimizer = _start(net, config)
    stem = work.conv_finetune / "checkpoint"
    state = load_checkpoint(stem, net, optimizer)  # restores torch's RNG (dropout) too
    if state is None:
        torch.manual_seed(config.seed)  # dropout masks: a resumed run draws the same ones
        state = {"iteration": 0, "history": []}
    history: list[dict[str, float]] = state["history"]
    net.det_head.train()
    running, count, started = 0.0, 0, time.perf_counter()
    first = int(state["iteration"])
    for it in tqdm(range(first, config.iterations), desc="conv fine-tune", disable=not progress):
        lr = config.lr * (0.1 if it >= int(config.iterations * config.lr_step) else 1.0)
        for group in optimizer.param_groups:
            group["lr"] = lr
        rng = np.random.default_rng([config.seed, it])
        loss = _iteration_loss(net, manifest, images, config, rng)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running, count = running + float(loss.detach()), count + 1
        if (it + 1) % config.checkpoint_every == 0 or it + 1 == config.iterations:
            seconds = time.perf_counter() - started
            history.append({"iteration": it + 1, "loss": running / count, "seconds": seconds})
            log.info("conv fine-tune %s", history[-1])
            save_checkpoint(stem, net, optimizer, {"iteration": it + 1, "history": history})
            running, count, started = 0.0, 0, time.perf_counter()
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return history


def load_or_conv_finetune(
    net: SppNet,
    manifest: Manifest,
    parts: list[DetectionImages],
    config: ConvFinetuneConfig,
    work: WorkDir,
    *,
    progress: bool,
) -> None:
    """Conv fine-tuning: load its result from ``<work>/conv-finetune/net.safetensors``, or run
    :func:`conv_finetune` and save the tensors it changed there."""
    path = work.conv_finetune / "net.safetensors"
    if path.is_file():
        unexpected = net.load_state_dict(load_file(str(path)), strict=False).unexpected_keys
        if unexpected:
            raise ValueError(f"{path}: tensors this network does not have: {unexpected[:5]}")
        return
    history = conv_finetune(net, manifest, parts, config, work, progress=progress)
    work.log_event("conv-finetune-done", history=history)
    tensors = {
        k: v.detach().contiguous()
        for k, v in net.state_dict().items()
        if k.startswith(_TRAINED_PREFIXES)
    }
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(path)
