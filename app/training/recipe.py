"""The training recipe: one YAML file, one frozen schema, unknown keys rejected.

A recipe names the model and holds one section per concern: ``data`` (which images),
``model`` and ``proposals`` (passed to :class:`app.model.config.ModelConfig` and
:class:`app.model.config.ProposalConfig`), and one section per trained stage (``pretrain``,
``finetune``, ``svm``; the box regressors have only ``bbox_alpha``). Its JSON form
(:meth:`TrainConfig.to_json`) is what a work directory records and what a model's manifest
keeps as ``training.recipe``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from app.data.shapes.knobs import GeneratorKnobs, knobs_for

#: Every section: immutable, unknown keys rejected, the docstring under a field is its meaning.
_SECTION = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


def _omit_at_default(
    model: BaseModel, data: dict[str, Any], names: tuple[str, ...]
) -> dict[str, Any]:
    """``data`` (``model``'s JSON form) without the fields ``names`` that are at their defaults.

    Fields added after the v1 model was trained are left out of the JSON form at their
    defaults, so a recipe that does not use them keeps the JSON form (and a manifest the
    ``training.recipe``) it had; reading that JSON back gives the same recipe.
    """
    for name in names:
        if getattr(model, name) == type(model).model_fields[name].get_default(
            call_default_factory=True
        ):
            data.pop(name, None)
    return data


#: Where stage-1 background windows come from (see ``PretrainConfig.background_source``).
BackgroundSource = Literal["random", "proposals"]


class DataConfig(BaseModel):
    """Which images the stages train on (docs/model.md §7)."""

    model_config = _SECTION

    kind: Literal["shapes", "voc"] = "shapes"
    """``shapes``: generate the shapes dataset into ``<work>/data``; ``voc``: read ``root``."""
    seed: int = 1
    """Seed of the generated train and val splits (kind shapes)."""
    train: int = 400
    """Generated training images (kind shapes)."""
    val: int = 100
    """Generated validation images (kind shapes); calibration fits on them."""
    pretrain_extra: int = 0
    """Extra generated images (seed + 1000) that only stage 1 trains on (kind shapes)."""
    detect_extra: int = 0
    """The first N of those extra images also train stages 3-5 (at most ``pretrain_extra``)."""
    root: str | None = None
    """Root of a VOC-layout dataset (kind voc)."""
    train_split: str = "train"
    """Image set that trains every stage."""
    val_split: str = "val"
    """Image set that calibrates the scores."""
    knobs: GeneratorKnobs = GeneratorKnobs()
    """Realism knobs of the generated images (kind shapes): a preset name (``v1``,
    ``realistic``) or a mapping of knobs (app/data/shapes/knobs.py); the JSON form leaves them
    out at their defaults, so recipes without knobs keep the JSON form they had."""
    extra_knobs: GeneratorKnobs | None = None
    """Realism knobs of the extra images (``pretrain_extra``, and so ``detect_extra``); None:
    the same as ``knobs``. Lets a recipe train on a mix, e.g. realistic train and val splits
    with the v1 images as the extra ones."""

    @field_validator("knobs", "extra_knobs", mode="before")
    @classmethod
    def _preset_by_name(cls, value: Any) -> Any:
        """A preset name stands for its knobs."""
        return knobs_for(value) if isinstance(value, str) else value

    @model_serializer(mode="wrap")
    def _omit_default_knobs(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _omit_at_default(self, handler(self), ("knobs", "extra_knobs"))

    @property
    def knobs_of_extra(self) -> GeneratorKnobs:
        """The knobs the extra images are generated with."""
        return self.knobs if self.extra_knobs is None else self.extra_knobs


class PretrainConfig(BaseModel):
    """Hyper-parameters of stage 1, classification pre-training (docs/model.md §7.1)."""

    model_config = _SECTION

    epochs: int = 10
    """Epochs of the cosine learning-rate schedule."""
    batch_size: int = 64
    """Crops per optimiser step."""
    lr: float = 1e-3
    """Peak AdamW learning rate."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    sizes: tuple[int, ...] = (224, 180)
    """Input sizes, alternating by epoch; the first is the crop size."""
    warmup_epochs: int = 0
    """The first epochs train at half of each size (e.g. 112 and 90)."""
    context: tuple[float, float] = (0.3, 0.95)
    """Range of the object's longer side over the crop side, drawn uniformly."""
    context_start: float = 0.75
    """Lower bound of ``context`` in epoch 1; it moves linearly to ``context[0]``."""
    crops_per_object: int = 1
    """Fresh crops of every object per epoch."""
    scene_views: int = 0
    """Extra whole-image views per epoch of each image holding one object."""
    background_per_image: int = 0
    """Background windows per image, labelled class K (0: no background class)."""
    background_source: BackgroundSource = "random"
    """``random`` squares, or ``proposals`` (the image's selective-search windows)."""
    finish_epochs: int = 0
    """Epochs after the schedule, at ``sizes`` and the final context."""
    finish_lr: float = 3e-4
    """Where the finishing phase's own cosine starts."""
    init_from: str | None = None
    """A model directory (``manifest.json`` + weights) whose trunk and classification head
    replace stage 1 (with ``epochs: 0``): a warm start from an earlier model, e.g. the v1 model
    for v2. Its classes must be the data's."""
    seed: int = 0
    """Seed of the crops, the background windows and the initial weights."""

    @model_serializer(mode="wrap")
    def _omit_new_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _omit_at_default(self, handler(self), ("init_from",))

    @model_validator(mode="after")
    def _warm_start_trains_nothing(self) -> PretrainConfig:
        if self.init_from is not None and self.total_epochs > 0:
            raise ValueError(
                "pretrain.init_from replaces stage 1: set epochs and finish_epochs to 0"
            )
        return self

    @property
    def total_epochs(self) -> int:
        """The schedule's epochs plus the finishing phase's."""
        return self.epochs + self.finish_epochs


class FinetuneConfig(BaseModel):
    """Hyper-parameters of stage 3, fine-tuning fc6/fc7 and a new fc8 (docs/model.md §7.3)."""

    model_config = _SECTION

    iterations: int = 3000
    """SGD iterations."""
    batch_size: int = 128
    """Windows per iteration."""
    fg_fraction: float = 0.25
    """Share of positives in every mini-batch."""
    lr: float = 1e-3
    """SGD learning rate until ``lr_step``; a tenth of it afterwards."""
    lr_step: float = 0.75
    """Fraction of the iterations after which the learning rate drops 10x."""
    momentum: float = 0.9
    """SGD momentum."""
    weight_decay: float = 5e-4
    """SGD weight decay."""
    fg_per_image: int = 48
    """Positives (IoU >= 0.5) sampled per image and scale mode."""
    bg_per_image: int = 96
    """Background windows (IoU in [0.1, 0.5)) sampled per image and scale mode."""
    far_bg_per_image: int = 0
    """Windows with IoU < 0.1 to every object per image and scale mode (0: the paper's)."""
    seed: int = 0
    """Seed of the window sampling and of fc8's initial weights."""


#: Trunk layers that stage 2b may train (the frozen ones stay as stage 1 left them).
ConvLayer = Literal["conv1", "conv2", "conv3", "conv4", "conv5"]


class ConvFinetuneConfig(BaseModel):
    """Stage 2b, optional: fine-tuning conv layers through the pyramid pooling together with
    fc6/fc7 and the (K+1)-way fc8 (a departure, Fast R-CNN's; ``iterations: 0`` is the
    paper's recipe, which keeps the trunk frozen after stage 1)."""

    model_config = _SECTION

    iterations: int = Field(default=0, ge=0)
    """SGD iterations (0: the stage does not run)."""
    layers: tuple[ConvLayer, ...] = ("conv3", "conv4", "conv5")
    """Trunk layers trained (Fast R-CNN trains conv3 and up)."""
    images_per_batch: int = Field(default=2, ge=1)
    """Images per iteration (each at its own scale; their windows form one mini-batch)."""
    windows_per_image: int = Field(default=64, ge=1)
    """Windows pooled per image."""
    fg_fraction: float = Field(default=0.25, gt=0.0, le=1.0)
    """Share of positives (IoU >= 0.5) among each image's windows, at most."""
    scales: tuple[int, ...] = (480, 576, 688)
    """Shorter sides an image is trained at, one drawn per image and iteration."""
    flip: bool = True
    """Flip half of the images left-right."""
    lr: float = Field(default=1e-3, gt=0.0)
    """SGD learning rate until ``lr_step``; a tenth of it afterwards."""
    lr_step: float = Field(default=0.75, gt=0.0, le=1.0)
    """Fraction of the iterations after which the learning rate drops 10x."""
    momentum: float = 0.9
    """SGD momentum."""
    weight_decay: float = 5e-4
    """SGD weight decay."""
    checkpoint_every: int = Field(default=100, ge=1)
    """Iterations between resumable checkpoints."""
    seed: int = 0
    """Seed of the image, scale, flip and window draws and of fc8's initial weights."""


class SvmConfig(BaseModel):
    """Hyper-parameters of stage 4, the SVMs (docs/model.md §7.4; liblinear's flags named)."""

    model_config = _SECTION

    C: float = 1e-3
    """Regularisation constant (liblinear ``-c``)."""
    positive_weight: float = 2.0
    """Weight of the positives' loss (liblinear ``-w1``)."""
    intercept_scaling: float = 10.0
    """Value of the bias feature (liblinear ``-B``)."""
    hard_threshold: float = -1.0001
    """Negatives scoring above this are hard and join the cache."""
    easy_threshold: float = -1.2
    """Cached negatives scoring below this are dropped at each retraining."""
    retrain_after: int = 2000
    """New hard negatives that trigger retraining."""
    initial_negatives: int = 4000
    """Random negatives of the first model."""
    max_cached: int = 30_000
    """The hardest negatives kept when the cache grows beyond this."""
    max_iter: int = 2000
    """liblinear iterations per fit."""
    chunk: int = 50_000
    """Negatives scored per mining step."""
    seed: int = 0
    """Seed of the initial negatives and of liblinear."""


class TrainConfig(BaseModel):
    """A whole recipe, read from YAML (:func:`load_recipe`)."""

    model_config = _SECTION

    name: str
    """Model name in the store."""
    version: str
    """Model version, recorded in its manifest."""
    description: str = ""
    """Free text for the manifest (surrounding whitespace stripped there)."""
    data: DataConfig = Field(default_factory=DataConfig)
    """Which images the stages train on."""
    model: dict[str, Any] = Field(default_factory=dict)
    """Fields of :class:`app.model.config.ModelConfig` (not ``num_classes``: from the data)."""
    proposals: dict[str, Any] = Field(default_factory=dict)
    """Fields of :class:`app.model.config.ProposalConfig`."""
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    """Stage 1."""
    conv_finetune: ConvFinetuneConfig = Field(default_factory=ConvFinetuneConfig)
    """Stage 2b (optional, off by default): conv layers fine-tuned through the pooling."""
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    """Stage 3."""
    svm: SvmConfig = Field(default_factory=SvmConfig)
    """Stage 4."""
    bbox_alpha: float = 1000.0
    """Ridge penalty of the box regressors (stage 5)."""
    workers: int = 2
    """Processes for data generation and selective search."""

    @model_serializer(mode="wrap")
    def _omit_new_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _omit_at_default(self, handler(self), ("conv_finetune",))

    @classmethod
    def from_yaml(cls, path: Path) -> TrainConfig:
        """The recipe in ``path`` (same as :func:`load_recipe`)."""
        return load_recipe(path)

    def to_json(self) -> dict[str, Any]:
        """The recipe as plain JSON data: every field, defaults included, tuples as lists."""
        return self.model_dump(mode="json")


def load_recipe(path: Path) -> TrainConfig:
    """Read a recipe from the YAML file ``path``.

    Raises:
        ValueError: naming ``path`` and the offending key when the file is not a mapping,
            holds an unknown key, or a value of the wrong type.
    """
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of recipe sections, got {type(raw).__name__}")
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"{path}: {exc}") from None
