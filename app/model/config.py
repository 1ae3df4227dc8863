"""Configuration of one SPP-net model, stored verbatim in its ``manifest.json``.

Every class here is a frozen pydantic dataclass that rejects unknown keys, so a manifest
written by a newer (or tampered) build fails loudly instead of being half-understood.
Field comments say what each hyper-parameter means and where it comes from in SPEC.md.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, field_validator
from pydantic.dataclasses import dataclass

_STRICT = ConfigDict(extra="forbid")

#: ZF-5 conv widths at width multiplier 1.0 (SPEC section 1): conv1 .. conv5.
ZF5_CHANNELS: tuple[int, int, int, int, int] = (96, 256, 384, 384, 256)

#: The paper's five test scales (SPEC section 4) and its single-scale choice.
PAPER_SCALES: tuple[int, ...] = (480, 576, 688, 864, 1200)
PAPER_SINGLE_SCALE = 688


@dataclass(frozen=True, config=_STRICT)
class ModelConfig:
    """Architecture of the ZF-5 SPP-net (SPEC sections 1, 2 and 6)."""

    num_classes: int = Field(ge=1)
    """K, the number of object classes (background is not counted)."""
    cls_background: bool = False
    """Whether the classification fc8 has a (K+1)-th output for background windows shown in
    stage-1 pre-training (a departure from the paper, whose ImageNet fc8 has none; see
    ``app.training.pretrain``). ``classify`` reports only the K object classes."""
    width: float = Field(default=1.0, gt=0.0, le=4.0)
    """Channel multiplier of conv1..conv5; 1.0 is the paper's ZF-5."""
    fc_dim: int = Field(default=4096, ge=1)
    """Width of fc6 and fc7; 4096 in the paper."""
    levels: tuple[int, ...] = (1, 2, 3, 6)
    """Pyramid levels (bins per side), concatenated in this order (SPEC section 2)."""
    dropout: float = Field(default=0.5, ge=0.0, lt=1.0)
    """Dropout after fc6 and fc7, training only."""
    lrn_size: int = 3
    """Window of the within-channel LRN (SPEC section 1)."""
    lrn_alpha: float = 5e-5
    lrn_beta: float = 0.75

    @field_validator("levels")
    @classmethod
    def _levels_positive(cls, levels: tuple[int, ...]) -> tuple[int, ...]:
        if not levels or any(n < 1 for n in levels):
            raise ValueError(f"levels must be positive integers, got {levels}")
        return levels

    @property
    def conv_channels(self) -> tuple[int, ...]:
        """Output channels of conv1..conv5 after the width multiplier (at least 8 each)."""
        return tuple(max(8, round(c * self.width)) for c in ZF5_CHANNELS)

    @property
    def bins(self) -> int:
        """Bins of the pyramid: sum of n * n over levels (50 for the paper's levels)."""
        return sum(n * n for n in self.levels)

    @property
    def spp_dim(self) -> int:
        """Length of one pooled window vector: conv5 channels times bins (12800 for ZF-5)."""
        return self.conv_channels[-1] * self.bins


@dataclass(frozen=True, config=_STRICT)
class PreprocessConfig:
    """How an RGB image becomes the network input (SPEC section 1)."""

    channel_order: Literal["BGR", "RGB"] = "BGR"
    """Channel order the conv1 weights expect."""
    pixel_mean: tuple[float, float, float] = (128.0, 128.0, 128.0)
    """Mean subtracted per channel, in ``channel_order``; no division by a std."""
    classify_size: int = Field(default=224, ge=32)
    """Shorter side the whole image is resized to for full-image classification."""
    view_scales: tuple[Annotated[int, Field(ge=32)], ...] = Field(
        default=(224, 256, 300, 360, 448, 560), min_length=1
    )
    """Shorter sides of multi-view classification (the paper's six scales, section 3.1.2)."""
    view_size: int = Field(default=224, ge=32)
    """Side of a multi-view classification view, in pixels of the resized image."""


@dataclass(frozen=True, config=_STRICT)
class DetectionConfig:
    """Test-time detection settings (SPEC sections 4 and 6)."""

    single_scale: int = PAPER_SINGLE_SCALE
    """Shorter side used in single-scale mode."""
    multi_scales: tuple[int, ...] = PAPER_SCALES
    """Scale set of multi-scale mode; each window picks one (SPEC section 4)."""
    max_long_side: int = Field(default=2000, ge=64)
    """Cap on the resized longer side, protecting memory; the effective scale is reported."""
    nms_iou: float = Field(default=0.3, gt=0.0, le=1.0)
    """Per-class non-maximum suppression threshold."""
    max_per_class: int = Field(default=100, ge=1)
    """Detections kept per class and image after NMS."""
    min_score: float = -1.5
    """Windows whose SVM score is below this never reach NMS (they cannot matter for AP)."""


@dataclass(frozen=True, config=_STRICT)
class ProposalConfig:
    """Selective search settings (SPEC section 5)."""

    max_side: int = Field(default=500, ge=0)
    """Longest side selective search runs at (0 = full size); boxes are mapped back."""
    max_proposals: int = Field(default=2000, ge=1)
    """Cap on the number of proposals per image, in selective-search order."""
    min_size: float = Field(default=4.0, ge=0.0)
    """Boxes narrower or shorter than this (original pixels) are dropped as degenerate."""
