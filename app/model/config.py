"""Configuration of one SPP-net model, stored verbatim in its ``manifest.json``.

Every class here is a frozen pydantic dataclass that rejects unknown keys, so a manifest
written by a newer (or tampered) build fails loudly instead of being half-understood.
Field comments say what each hyper-parameter means and where it comes from in docs/model.md.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator
from pydantic.dataclasses import dataclass

_STRICT = ConfigDict(extra="forbid", use_attribute_docstrings=True)

#: ZF-5 conv widths at width multiplier 1.0 (docs/model.md §1): conv1 .. conv5.
ZF5_CHANNELS: tuple[int, int, int, int, int] = (96, 256, 384, 384, 256)

#: The paper's five test scales (docs/model.md §4) and its single-scale choice.
PAPER_SCALES: tuple[int, ...] = (480, 576, 688, 864, 1200)
PAPER_SINGLE_SCALE = 688
#: ZF-5 conv kernels, conv1 .. conv5 (docs/model.md §1); a pad of kernel // 2 is docs/model.md's.
ZF5_KERNELS: tuple[int, int, int, int, int] = (7, 5, 3, 3, 3)

PixelExtent = Literal["exclusive", "inclusive"]
#: ``single``: one scale; ``multi``: the scale set, each window picking one (docs/model.md §4).
ScaleMode = Literal["single", "multi"]


@dataclass(frozen=True, config=_STRICT)
class ModelConfig:
    """Architecture of the ZF-5 SPP-net (docs/model.md §§1, 2 and 6)."""

    num_classes: int = Field(ge=1)
    """K, the number of object classes (background is not counted)."""
    cls_background: bool = False
    """Whether the classification fc8 has a (K+1)-th output for background windows shown in
    the pre-training stage (a departure from the paper, whose ImageNet fc8 has none; see
    ``app.training.stages.pretrain``). ``classify`` reports only the K object classes."""
    width: float = Field(default=1.0, gt=0.0, le=4.0)
    """Channel multiplier of conv1..conv5; 1.0 is the paper's ZF-5."""
    fc_dim: int = Field(default=4096, ge=1)
    """Width of fc6 and fc7; 4096 in the paper."""
    fc7_dim: int | None = Field(default=None, ge=1)
    """Width of fc7 when it differs from fc6's (an imported network); ``None``: ``fc_dim``."""
    levels: tuple[int, ...] = (1, 2, 3, 6)
    """Pyramid levels (bins per side), concatenated in this order (docs/model.md §2)."""
    dropout: float = Field(default=0.5, ge=0.0, lt=1.0)
    """Dropout after fc6 and fc7, training only."""
    lrn_size: int = 3
    """Window of the within-channel LRN (docs/model.md §1)."""
    lrn_alpha: float = 5e-5
    lrn_beta: float = 0.75
    channels: tuple[int, int, int, int, int] | None = None
    """Output channels of conv1..conv5 given outright (an imported network); ``None``: ZF-5's
    widths times ``width`` (docs/model.md §1)."""
    conv_pads: tuple[int, int, int, int, int] = (3, 2, 1, 1, 1)
    """Zero padding of conv1..conv5 (kernels 7, 5, 3, 3, 3); docs/model.md §1 has kernel // 2,
    so that conv5 cell j is centred on pixel 16 j; the SPP_net release's Caffe trunk has
    (1, 0, 1, 1, 1)."""
    pool_pad: int = Field(default=1, ge=0, le=1)
    """Padding of the 3 x 3 / 2 max pools after conv1 and conv2 (docs/model.md §1: 1; Caffe: 0)."""
    pool_ceil_mode: bool = False
    """Whether those pools round their output size up (Caffe's rule, ``ceil((a - 3) / 2) + 1``
    without padding) instead of down."""
    classifier: bool = True
    """Whether the network has the whole-image classification head (``cls_head`` +
    ``cls_fc8``); an imported detector without one serves detection (and ``views=detect``)."""

    @field_validator("levels")
    @classmethod
    def _levels_positive(cls, levels: tuple[int, ...]) -> tuple[int, ...]:
        if not levels or any(n < 1 for n in levels):
            raise ValueError(f"levels must be positive integers, got {levels}")
        return levels

    @field_validator("channels")
    @classmethod
    def _channels_positive(
        cls, channels: tuple[int, int, int, int, int] | None
    ) -> tuple[int, int, int, int, int] | None:
        if channels is not None and any(c < 1 for c in channels):
            raise ValueError(f"channels must be positive integers, got {channels}")
        return channels

    @field_validator("conv_pads")
    @classmethod
    def _pads_fit_kernels(
        cls, pads: tuple[int, int, int, int, int]
    ) -> tuple[int, int, int, int, int]:
        if any(not 0 <= p < k for p, k in zip(pads, ZF5_KERNELS, strict=True)):
            raise ValueError(f"conv_pads must be in [0, kernel) for kernels {ZF5_KERNELS}")
        return pads

    @property
    def conv_channels(self) -> tuple[int, ...]:
        """Output channels of conv1..conv5: ``channels``, else ZF-5's after the width multiplier
        (at least 8 each)."""
        if self.channels is not None:
            return self.channels
        return tuple(max(8, round(c * self.width)) for c in ZF5_CHANNELS)

    @property
    def feature_dim(self) -> int:
        """Width of fc7, the features of the SVMs and fc8: ``fc7_dim``, else ``fc_dim``."""
        return self.fc_dim if self.fc7_dim is None else self.fc7_dim

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
    """How an RGB image becomes the network input (docs/model.md §1)."""

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
    """Test-time detection settings (docs/model.md §§4 and 6)."""

    single_scale: int = PAPER_SINGLE_SCALE
    """Shorter side used in single-scale mode."""
    multi_scales: tuple[int, ...] = PAPER_SCALES
    """Scale set of multi-scale mode; each window picks one (docs/model.md §4)."""
    max_long_side: int = Field(default=2000, ge=64)
    """Cap on the resized longer side, protecting memory; the effective scale is reported."""
    nms_iou: float = Field(default=0.3, gt=0.0, le=1.0)
    """Per-class non-maximum suppression threshold."""
    max_per_class: int = Field(default=100, ge=1)
    """Detections kept per class and image after NMS."""
    min_score: float | None = -1.5
    """Windows whose SVM score is below this never reach NMS (they cannot matter for AP);
    ``None``: no threshold (the SPP_net release's ``spp_detect.m`` has none)."""
    nms_extent: PixelExtent = "exclusive"
    """How NMS measures a box: ``exclusive``, width ``x2 - x1`` (torchvision); ``inclusive``,
    width ``x2 - x1 + 1`` (boxes as pixel sets, as the release's ``nms_multiclass_mex.cpp``)."""
    default_scales: ScaleMode = "single"
    """Scale mode of a request that does not choose one (``/detect``'s ``scales``)."""
    nms_before_regression: bool = False
    """Order of NMS and box regression. ``False`` (docs/model.md §6): every candidate window is
    regressed, NMS runs on the regressed boxes and each class keeps its ``max_per_class`` best.
    ``True`` (the SPP_net release's test path, ``spp_test.m`` then
    ``spp_test_bbox_regressor.m``): each class keeps its ``max_per_class`` best-scoring
    windows, NMS runs on them unregressed, and only the survivors are regressed."""
    calibration: Literal["platt", "none"] = "platt"
    """What ``confidence`` is. ``platt``: ``sigmoid(a_k * score + b_k)``, per class, fitted on
    the val split (``net.platt``). ``none``: no calibration was fitted, ``confidence`` is
    ``sigmoid(score)``, a monotone map of the raw SVM score into (0, 1) (0.5 at score 0, the
    SVM's decision boundary) and not a probability; ``net.platt`` is not used."""


@dataclass(frozen=True, config=_STRICT)
class WindowConfig:
    """How a window becomes conv5 cells: scale choice, scaling to the map, projection (docs/model.md
    sections 3 and 4). Windows are ``[x1, y1, x2, y2]`` in the image's 0-based pixel frame."""

    scale_choice: Literal["area", "expected_scale"] = "area"
    """``area`` (docs/model.md §4): the scale at which the window's area is closest to
    ``target_side ** 2``, a tie going to the smaller scale. ``expected_scale`` (the release's
    ``spm_expected_scale.m``): ``e = round(target_side * min_side / sqrt(area))``, halves up,
    and the scale closest to ``e``, a tie going to the first listed."""
    target_side: float = Field(default=224.0, gt=0.0)
    """Side, in resized pixels, of the square window the scale choice aims at (the release:
    ``sz_conv_standard * step_standard`` = 13 * 16 = 208)."""
    area_extent: PixelExtent = "exclusive"
    """Window area of the scale choice: ``(x2 - x1) (y2 - y1)`` (``exclusive``) or
    ``(x2 - x1 + 1) (y2 - y1 + 1)`` (``inclusive``, pixel sets)."""
    box_scaling: Literal["factor", "align_corners"] = "factor"
    """How a window moves into the resized image: ``factor``, ``x * new_w / w`` and
    ``y * new_h / h``; ``align_corners``, both axes times ``(s - 1) / (m - 1)`` with ``m``, ``s``
    the shorter side before and after resizing (pixel 0 stays 0, pixel m - 1 becomes s - 1: the
    release's ``(b - 1) (s - 1) / (m - 1) + 1`` on 1-based boxes)."""
    projection: Literal["stride", "offset"] = "stride"
    """Window -> conv5 cells. ``stride``: the paper's appendix rule of
    :func:`~app.ops.spp.project_windows`. ``offset``: the release's ``spm_pool_caffe_mex.cpp``
    rule of :func:`~app.ops.spp.project_windows_offset` with ``offset0`` and ``offset``."""
    stride: float = Field(default=16.0, gt=0.0)
    """Pixels per conv5 cell (``step_standard``); an integer for ``projection = stride``."""
    offset0: float = 0.0
    """``offset`` projection: image position (1-based pixels) of conv5 cell 1's reference point."""
    offset: float = 0.0
    """``offset`` projection: pixels a window shrinks by on each side before projection."""

    @model_validator(mode="after")
    def _integer_stride(self) -> WindowConfig:
        if self.projection == "stride" and self.stride != int(self.stride):
            raise ValueError(f"projection 'stride' needs an integer stride, got {self.stride}")
        return self


@dataclass(frozen=True, config=_STRICT)
class ProposalConfig:
    """Selective search settings (docs/model.md §5)."""

    max_side: int = Field(default=500, ge=0)
    """Longest side selective search runs at (0 = full size); boxes are mapped back."""
    max_proposals: int = Field(default=2000, ge=1)
    """Cap on the number of proposals per image, in selective-search order."""
    min_size: float = Field(default=4.0, ge=0.0)
    """Boxes narrower or shorter than this (original pixels) are dropped as degenerate."""
