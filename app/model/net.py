"""The whole SPP-net: ZF-5 trunk, classification head and detection heads."""

from __future__ import annotations

from torch import Tensor, nn

from app.model.config import ModelConfig
from app.model.heads import BoxRegressor, FcHead, PlattCalibration, SvmScorer
from app.model.zf5 import ZF5Trunk
from app.ops.spp import spatial_pyramid_pool


class SppNet(nn.Module):
    """ZF-5 SPP-net with both heads of docs/model.md §6.

    * ``trunk``: conv1..conv5 (frozen after classification pre-training).
    * ``cls_head`` + ``cls_fc8``: classification (full-image SPP, softmax over K classes, or
      K + 1 with the last for background when ``config.cls_background``).
    * ``det_head``: fc6/fc7 fine-tuned on windows; ``det_fc8`` is the (K+1)-way layer used only
      while fine-tuning (background = 0) and is kept so fine-tuning can resume.
    * ``svm``, ``bbox``, ``platt``: per-class scoring, box regression and calibration.

    Without ``config.classifier`` (an imported detector) ``cls_head`` and ``cls_fc8`` do not
    exist: neither as attributes nor in the state dict.
    """

    cls_head: FcHead
    cls_fc8: nn.Linear

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        dim, fc, k = config.spp_dim, config.fc_dim, config.num_classes
        fc7 = config.feature_dim
        self.trunk = ZF5Trunk(config)
        if config.classifier:
            self.cls_head = FcHead(dim, fc, config.dropout, fc7)
            self.cls_fc8 = nn.Linear(fc7, k + int(config.cls_background))
        self.det_head = FcHead(dim, fc, config.dropout, fc7)
        self.det_fc8 = nn.Linear(fc7, k + 1)
        self.svm = SvmScorer(k, fc7)
        self.bbox = BoxRegressor(k, dim)
        self.platt = PlattCalibration(k)

    def classify_logits(self, images: Tensor) -> Tensor:
        """Full-image SPP classification.

        Args:
            images (Tensor[B, 3, H, W]): preprocessed images (any H, W >= 16).

        Returns:
            Tensor[B, K] (``[B, K + 1]`` with ``cls_background``, background last): class
            logits (softmax gives probabilities).

        Raises:
            ValueError: the network has no classification head (``config.classifier`` false).
        """
        if not self.config.classifier:
            raise ValueError("this model has no whole-image classification head")
        pooled = spatial_pyramid_pool(self.trunk(images), self.config.levels)  # [B, D]
        return self.cls_fc8(self.cls_head(pooled))
