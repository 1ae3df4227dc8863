"""Recall of region proposals: the fraction of ground-truth boxes that some proposal covers.

A ground-truth box counts as recalled at threshold ``t`` when its best IoU with any proposal of
its image is ``>= t``. Difficult ground truth is left out (as in the VOC metric). IoU is
torchvision's :func:`~torchvision.ops.box_iou` on the project's 0-based float boxes, without
the VOC "+1" convention (which belongs only to the AP computation).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torchvision.ops import box_iou

from app.data.voc import VocAnnotation

RECALL_IOU_THRESHOLDS: tuple[float, ...] = (0.5, 0.7)
"""The IoU thresholds reported by default."""


@dataclass(frozen=True, eq=False)
class ProposalRecall:
    """Proposal recall over a set of images.

    Attributes:
        thresholds: the IoU thresholds.
        recall: fraction of ground-truth boxes recalled at each threshold (NaN without gt).
        num_gt: number of (non-difficult) ground-truth boxes.
        num_images: number of images.
        mean_proposals: mean number of proposals per image.
        best_iou: np.ndarray[num_gt] float32, the best proposal IoU of each ground-truth box.
    """

    thresholds: tuple[float, ...]
    recall: dict[float, float]
    num_gt: int
    num_images: int
    mean_proposals: float
    best_iou: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary; NaN becomes None, thresholds become keys such as ``"0.5"``."""
        return {
            "recall": {str(t): None if math.isnan(r) else r for t, r in self.recall.items()},
            "num_gt": self.num_gt,
            "num_images": self.num_images,
            "mean_proposals": self.mean_proposals,
            "mean_best_iou": float(self.best_iou.mean()) if self.best_iou.size else None,
        }


def _as_boxes(boxes: Any, what: str, index: int) -> torch.Tensor:
    if isinstance(boxes, torch.Tensor):
        tensor = boxes.detach().to(device="cpu", dtype=torch.float32)
    else:
        tensor = torch.from_numpy(np.array(boxes, np.float32))
    if tensor.numel() == 0:
        return tensor.reshape(0, 4)
    if tensor.ndim != 2 or tensor.shape[1] != 4:
        raise ValueError(
            f"image {index}: expected {what} of shape [N, 4], got {tuple(tensor.shape)}"
        )
    return tensor


def best_proposal_iou(proposals: Any, gt_boxes: Any) -> np.ndarray:
    """Best IoU of each ground-truth box with any proposal.

    Args:
        proposals: array or tensor [N, 4] ``(x1, y1, x2, y2)`` pixels.
        gt_boxes: array or tensor [M, 4], same convention.

    Returns:
        np.ndarray[M] float32 (zeros when there is no proposal).
    """
    props = _as_boxes(proposals, "proposals", 0)
    gt = _as_boxes(gt_boxes, "ground-truth boxes", 0)
    if gt.shape[0] == 0:
        return np.zeros(0, np.float32)
    if props.shape[0] == 0:
        return np.zeros(gt.shape[0], np.float32)
    return box_iou(gt, props).max(dim=1).values.numpy().astype(np.float32)  # [M]


def proposal_recall(
    proposals_per_image: Sequence[Any],
    gt_boxes_per_image: Sequence[Any],
    thresholds: Sequence[float] = RECALL_IOU_THRESHOLDS,
    *,
    difficult_per_image: Sequence[Any] | None = None,
) -> ProposalRecall:
    """Recall of proposals at IoU thresholds.

    Args:
        proposals_per_image: per image, an array or tensor [N_i, 4] of proposal boxes.
        gt_boxes_per_image: per image, an array or tensor [M_i, 4] of ground-truth boxes.
        thresholds: IoU thresholds; a box is recalled at ``t`` when its best IoU is ``>= t``.
        difficult_per_image: per image, bool [M_i]; those boxes are left out. None keeps all.

    Returns:
        The recall at each threshold and the best IoU of every counted ground-truth box.
    """
    if len(proposals_per_image) != len(gt_boxes_per_image):
        raise ValueError(
            f"expected as many proposal sets as ground-truth sets, got "
            f"{len(proposals_per_image)} and {len(gt_boxes_per_image)}"
        )
    if difficult_per_image is not None and len(difficult_per_image) != len(gt_boxes_per_image):
        raise ValueError(
            f"expected one difficult array per image, got "
            f"{len(difficult_per_image)} for {len(gt_boxes_per_image)} images"
        )
    best: list[np.ndarray] = []
    total_proposals = 0
    for index, (proposals, gt_boxes) in enumerate(
        zip(proposals_per_image, gt_boxes_per_image, strict=True)
    ):
        props = _as_boxes(proposals, "proposals", index)
        gt = _as_boxes(gt_boxes, "ground-truth boxes", index)
        total_proposals += int(props.shape[0])
        if difficult_per_image is not None:
            difficult = np.asarray(difficult_per_image[index], bool).reshape(-1)
            if difficult.shape[0] != gt.shape[0]:
                raise ValueError(
                    f"image {index}: expected {gt.shape[0]} difficult flags, got "
                    f"{difficult.shape[0]}"
                )
            gt = gt[torch.from_numpy(~difficult)]
        best.append(best_proposal_iou(props, gt))
    best_iou = np.concatenate(best) if best else np.zeros(0, np.float32)
    thresholds = tuple(float(t) for t in thresholds)
    recall = {t: float((best_iou >= t).mean()) if best_iou.size else math.nan for t in thresholds}
    num_images = len(proposals_per_image)
    return ProposalRecall(
        thresholds=thresholds,
        recall=recall,
        num_gt=int(best_iou.size),
        num_images=num_images,
        mean_proposals=total_proposals / num_images if num_images else 0.0,
        best_iou=best_iou,
    )


def proposal_recall_for_annotations(
    proposals: Mapping[str, Any],
    annotations: Mapping[str, VocAnnotation],
    thresholds: Sequence[float] = RECALL_IOU_THRESHOLDS,
) -> ProposalRecall:
    """:func:`proposal_recall` over the non-difficult ground truth of VOC annotations.

    Args:
        proposals: per image id, an array or tensor [N, 4]; every annotated image needs one.
        annotations: ground truth by image id.
        thresholds: IoU thresholds.
    """
    missing = [image_id for image_id in annotations if image_id not in proposals]
    if missing:
        raise ValueError(f"no proposals for {len(missing)} images, e.g. {missing[0]!r}")
    ids = list(annotations)
    return proposal_recall(
        [proposals[i] for i in ids],
        [annotations[i].boxes for i in ids],
        thresholds,
        difficult_per_image=[annotations[i].difficult for i in ids],
    )
