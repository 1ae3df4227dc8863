"""Training windows of one image: ground truth + proposals and their overlaps.

Which windows each stage takes is docs/model.md §§7.3-7.5.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import box_iou

from app.data.voc import VocAnnotation


@dataclass(frozen=True)
class LabelledWindows:
    """Windows of one image: the ground-truth boxes first, then the proposals.

    * ``boxes (Tensor[N, 4])``
    * ``is_gt (Tensor[N] bool)``, ``gt_difficult (Tensor[N] bool)`` (true only for gt rows)
    * ``gt_class (Tensor[N] long)``: class of the row's own gt box, -1 for proposals
    * ``max_iou (Tensor[N])``, ``best_gt (Tensor[N] long)``: best overlap with any gt box
    * ``class_iou (Tensor[N, K])``: best overlap with a gt box of each class
    * ``class_iou_difficult (Tensor[N, K])``: the same over difficult gt boxes only
    * ``gt_boxes (Tensor[G, 4])``, ``gt_labels (Tensor[G] long)``
    """

    boxes: Tensor
    is_gt: Tensor
    gt_difficult: Tensor
    gt_class: Tensor
    max_iou: Tensor
    best_gt: Tensor
    class_iou: Tensor
    class_iou_difficult: Tensor
    gt_boxes: Tensor
    gt_labels: Tensor


def label_windows(
    annotation: VocAnnotation, proposals: np.ndarray, classes: list[str]
) -> LabelledWindows:
    """Stack the gt boxes and ``proposals [P, 4]`` and compute every overlap the stages need."""
    gt = torch.as_tensor(annotation.boxes, dtype=torch.float32).reshape(-1, 4)
    labels = torch.tensor([classes.index(name) for name in annotation.labels], dtype=torch.long)
    difficult = torch.as_tensor(np.asarray(annotation.difficult, dtype=bool))
    props = torch.as_tensor(proposals, dtype=torch.float32).reshape(-1, 4)
    boxes = torch.cat([gt, props])
    n, k = len(boxes), len(classes)
    is_gt = torch.zeros(n, dtype=torch.bool)
    is_gt[: len(gt)] = True
    gt_difficult = torch.zeros(n, dtype=torch.bool)
    gt_difficult[: len(gt)] = difficult
    gt_class = torch.full((n,), -1, dtype=torch.long)
    gt_class[: len(gt)] = labels
    class_iou = torch.zeros(n, k)
    class_iou_difficult = torch.zeros(n, k)
    if len(gt):
        iou = box_iou(boxes, gt)  # [N, G]
        max_iou, best_gt = iou.max(dim=1)
        for c in range(k):
            mine = labels == c
            if (mine & ~difficult).any():
                class_iou[:, c] = iou[:, mine & ~difficult].max(dim=1).values
            if (mine & difficult).any():
                class_iou_difficult[:, c] = iou[:, mine & difficult].max(dim=1).values
    else:
        max_iou, best_gt = torch.zeros(n), torch.zeros(n, dtype=torch.long)
    return LabelledWindows(
        boxes=boxes,
        is_gt=is_gt,
        gt_difficult=gt_difficult,
        gt_class=gt_class,
        max_iou=max_iou,
        best_gt=best_gt,
        class_iou=class_iou,
        class_iou_difficult=class_iou_difficult,
        gt_boxes=gt,
        gt_labels=labels,
    )
