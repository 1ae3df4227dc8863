"""The training recipe: one YAML file, one frozen schema, unknown keys rejected.

A recipe names the model and holds one section per concern: ``data`` (which images),
``model`` and ``proposals`` (the fields of :class:`app.model.config.ModelConfig` and
:class:`app.model.config.ProposalConfig`, with their validators, checked as the recipe is
read), and one section per trained stage (``pretrain``, ``conv_finetune``, ``finetune``,
``svm``; the box regressors have only ``bbox_alpha``). Settings that cannot work together
(``warmup_epochs`` above ``epochs``, ...) are refused when the recipe is read. Its JSON form
(:meth:`TrainConfig.to_json`) is what a work directory records and what a model's manifest
keeps as ``training.recipe``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    create_model,
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.fields import FieldInfo

from app.data.shapes.knobs import GeneratorKnobs, knobs_for
from app.model.config import DetectionConfig, ModelConfig, ProposalConfig

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


class RecipeError(ValueError):
    """A recipe file that cannot be used; the message is one line naming the file and key."""


class _ModelSectionBase(BaseModel):
    """The recipe's ``model`` section: every :class:`ModelConfig` field but the two the data
    and the pre-training decide (``num_classes``, ``cls_background``)."""

    model_config = _SECTION

    def to_config(self, *, num_classes: int, cls_background: bool) -> ModelConfig:
        """The network's configuration for ``num_classes`` classes."""
        return ModelConfig(
            num_classes=num_classes, cls_background=cls_background, **self.model_dump()
        )


class _ProposalSectionBase(BaseModel):
    """The recipe's ``proposals`` section: the fields of :class:`ProposalConfig`."""

    model_config = _SECTION

    def to_config(self) -> ProposalConfig:
        """The selective-search settings the model records."""
        return ProposalConfig(**self.model_dump())


def _section_of(
    config_class: type, base: type[BaseModel], leave_out: tuple[str, ...] = ()
) -> type[BaseModel]:
    """A recipe section with the fields (types, defaults, bounds) and field validators of the
    pydantic dataclass ``config_class``, less ``leave_out``: the model's schema, written once."""
    fields: dict[str, Any] = {
        name: (info.annotation, FieldInfo.merge_field_infos(info))
        for name, info in config_class.__pydantic_fields__.items()  # type: ignore[attr-defined]
        if name not in leave_out
    }
    decorators = config_class.__pydantic_decorators__.field_validators  # type: ignore[attr-defined]
    validators = {
        name: field_validator(*d.info.fields, mode=d.info.mode)(d.func.__func__)
        for name, d in decorators.items()
    }
    name = config_class.__name__.removesuffix("Config") + "Section"
    return create_model(name, __base__=base, __validators__=validators, **fields)


class _DetectionSectionBase(BaseModel):
    """The recipe's ``detection`` section: the fields of :class:`DetectionConfig` (the test-time
    scales, which the conv5 cache and the detection stages also train at)."""

    model_config = _SECTION

    def to_config(self) -> DetectionConfig:
        """The detection settings the model records."""
        return DetectionConfig(**self.model_dump())


if TYPE_CHECKING:
    ModelSection = _ModelSectionBase
    ProposalSection = _ProposalSectionBase
    DetectionSection = _DetectionSectionBase
else:
    ModelSection = _section_of(
        ModelConfig, _ModelSectionBase, leave_out=("num_classes", "cls_background")
    )
    ProposalSection = _section_of(ProposalConfig, _ProposalSectionBase)
    DetectionSection = _section_of(DetectionConfig, _DetectionSectionBase)


#: Where pre-training's background windows come from (``PretrainConfig.background_source``).
BackgroundSource = Literal["random", "proposals"]


class DataConfig(BaseModel):
    """Which images the stages train on (docs/model.md §7)."""

    model_config = _SECTION

    kind: Literal["shapes", "voc"] = "shapes"
    """``shapes``: generate the shapes dataset into ``<work>/data``; ``voc``: read ``root``."""
    seed: int = 1
    """Seed of the generated train and val splits (kind shapes)."""
    train: int = Field(default=400, ge=1)
    """Generated training images (kind shapes)."""
    val: int = Field(default=100, ge=1)
    """Generated validation images (kind shapes); calibration fits on them."""
    pretrain_extra: int = Field(default=0, ge=0)
    """Extra generated images (seed + 1000) that only pre-training trains on (kind shapes)."""
    detect_extra: int = Field(default=0, ge=0)
    """The first N of those extra images also train the detection stages (conv5 cache,
    fine-tuning, regressors, SVMs; at most ``pretrain_extra``)."""
    root: str | None = None
    """Root of a VOC-layout dataset (kind voc)."""
    train_split: str = "train"
    """Image set that trains every stage."""
    val_split: str = "val"
    """Image set that calibrates the scores (never the split you report on)."""
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

    @model_validator(mode="after")
    def _consistent(self) -> DataConfig:
        if self.detect_extra > self.pretrain_extra:
            raise ValueError(
                f"detect_extra ({self.detect_extra}) is taken from the pretrain_extra images "
                f"({self.pretrain_extra}): raise pretrain_extra or lower detect_extra"
            )
        if self.kind == "voc" and not self.root:
            raise ValueError("kind voc reads a VOC-layout dataset: set data.root")
        if self.train_split == self.val_split:
            raise ValueError(
                f"train_split and val_split are both {self.val_split!r}: calibration needs "
                "images the stages did not train on"
            )
        return self

    @property
    def knobs_of_extra(self) -> GeneratorKnobs:
        """The knobs the extra images are generated with."""
        return self.knobs if self.extra_knobs is None else self.extra_knobs


class PretrainConfig(BaseModel):
    """Hyper-parameters of classification pre-training (docs/model.md §7.1)."""

    model_config = _SECTION

    epochs: int = Field(default=10, ge=0)
    """Epochs of the cosine learning-rate schedule."""
    batch_size: int = Field(default=64, ge=1)
    """Crops per optimiser step."""
    lr: float = Field(default=1e-3, gt=0.0)
    """Peak AdamW learning rate."""
    weight_decay: float = Field(default=1e-4, ge=0.0)
    """AdamW weight decay."""
    sizes: tuple[int, ...] = Field(default=(224, 180), min_length=1)
    """Input sizes, alternating by epoch; the first is the crop size."""
    warmup_epochs: int = Field(default=0, ge=0)
    """The first epochs train at half of each size (e.g. 112 and 90)."""
    context: tuple[float, float] = (0.3, 0.95)
    """Range of the object's longer side over the crop side, drawn uniformly."""
    context_start: float = Field(default=0.75, gt=0.0, le=1.0)
    """Lower bound of ``context`` in epoch 1; it moves linearly to ``context[0]``."""
    crops_per_object: int = Field(default=1, ge=1)
    """Fresh crops of every object per epoch."""
    scene_views: int = Field(default=0, ge=0)
    """Extra whole-image views per epoch of each image holding one object."""
    background_per_image: int = Field(default=0, ge=0)
    """Background windows per image, labelled class K (0: no background class)."""
    background_source: BackgroundSource = "random"
    """``random`` squares, or ``proposals`` (the image's selective-search windows)."""
    finish_epochs: int = Field(default=0, ge=0)
    """Epochs after the schedule, at ``sizes`` and the final context."""
    finish_lr: float = Field(default=3e-4, gt=0.0)
    """Where the finishing phase's own cosine starts."""
    init_from: str | None = None
    """A model directory (``manifest.json`` + weights) whose trunk and classification head
    replace pre-training (with ``epochs: 0``): a warm start from an earlier model, e.g. the v1 model
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
                "pretrain.init_from replaces pre-training: set epochs and finish_epochs to 0"
            )
        if self.warmup_epochs > self.epochs:
            raise ValueError(
                f"warmup_epochs ({self.warmup_epochs}) is part of epochs ({self.epochs}): "
                "lower warmup_epochs or raise epochs"
            )
        if any(size < 32 for size in self.sizes):
            raise ValueError(f"sizes must be at least 32 pixels, got {list(self.sizes)}")
        low, high = self.context
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"context must be 0 < low <= high <= 1, got {list(self.context)}")
        return self

    @property
    def total_epochs(self) -> int:
        """The schedule's epochs plus the finishing phase's."""
        return self.epochs + self.finish_epochs


class FinetuneConfig(BaseModel):
    """Hyper-parameters of fine-tuning fc6/fc7 and a new fc8 on the pooled windows
    (docs/model.md §7.3)."""

    model_config = _SECTION

    iterations: int = Field(default=3000, ge=0)
    """SGD iterations."""
    batch_size: int = Field(default=128, ge=1)
    """Windows per iteration."""
    fg_fraction: float = Field(default=0.25, gt=0.0, le=1.0)
    """Share of positives in every mini-batch."""
    lr: float = Field(default=1e-3, gt=0.0)
    """SGD learning rate until ``lr_step``; a tenth of it afterwards."""
    lr_step: float = Field(default=0.75, gt=0.0, le=1.0)
    """Fraction of the iterations after which the learning rate drops 10x."""
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)
    """SGD momentum."""
    weight_decay: float = Field(default=5e-4, ge=0.0)
    """SGD weight decay."""
    fg_per_image: int = Field(default=48, ge=1)
    """Positives (IoU >= 0.5) sampled per image and scale mode."""
    bg_per_image: int = Field(default=96, ge=0)
    """Background windows (IoU in [0.1, 0.5)) sampled per image and scale mode."""
    far_bg_per_image: int = Field(default=0, ge=0)
    """Windows with IoU < 0.1 to every object per image and scale mode (0: the paper's)."""
    seed: int = 0
    """Seed of the window sampling and of fc8's initial weights."""


#: Trunk layers that conv fine-tuning may train (the frozen ones stay as pre-training left them).
ConvLayer = Literal["conv1", "conv2", "conv3", "conv4", "conv5"]


class ConvFinetuneConfig(BaseModel):
    """Conv fine-tuning, optional: conv layers trained through the pyramid pooling together
    with fc6/fc7 and the (K+1)-way fc8 (a departure, Fast R-CNN's; ``iterations: 0`` is the
    paper's recipe, which keeps the trunk frozen after pre-training)."""

    model_config = _SECTION

    iterations: int = Field(default=0, ge=0)
    """SGD iterations (0: the stage does not run)."""
    layers: tuple[ConvLayer, ...] = Field(default=("conv3", "conv4", "conv5"), min_length=1)
    """Trunk layers trained (Fast R-CNN trains conv3 and up)."""
    images_per_batch: int = Field(default=2, ge=1)
    """Images per iteration (each at its own scale; their windows form one mini-batch)."""
    windows_per_image: int = Field(default=64, ge=1)
    """Windows pooled per image."""
    fg_fraction: float = Field(default=0.25, gt=0.0, le=1.0)
    """Share of positives (IoU >= 0.5) among each image's windows, at most."""
    scales: tuple[Annotated[int, Field(ge=32)], ...] = Field(default=(480, 576, 688), min_length=1)
    """Shorter sides an image is trained at, one drawn per image and iteration."""
    flip: bool = True
    """Flip half of the images left-right."""
    lr: float = Field(default=1e-3, gt=0.0)
    """SGD learning rate until ``lr_step``; a tenth of it afterwards."""
    lr_step: float = Field(default=0.75, gt=0.0, le=1.0)
    """Fraction of the iterations after which the learning rate drops 10x."""
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)
    """SGD momentum."""
    weight_decay: float = Field(default=5e-4, ge=0.0)
    """SGD weight decay."""
    checkpoint_every: int = Field(default=100, ge=1)
    """Iterations between resumable checkpoints."""
    seed: int = 0
    """Seed of the image, scale, flip and window draws and of fc8's initial weights."""


class SvmConfig(BaseModel):
    """Hyper-parameters of the SVMs with hard-negative mining (docs/model.md §7.4; liblinear's
    flags named)."""

    model_config = _SECTION

    C: float = Field(default=1e-3, gt=0.0)
    """Regularisation constant (liblinear ``-c``)."""
    positive_weight: float = Field(default=2.0, gt=0.0)
    """Weight of the positives' loss (liblinear ``-w1``)."""
    intercept_scaling: float = Field(default=10.0, gt=0.0)
    """Value of the bias feature (liblinear ``-B``)."""
    hard_threshold: float = -1.0001
    """Negatives scoring above this are hard and join the cache."""
    easy_threshold: float = -1.2
    """Cached negatives scoring below this are dropped at each retraining."""
    retrain_after: int = Field(default=2000, ge=0)
    """Retrain when more new hard negatives than this have joined the cache."""
    initial_negatives: int = Field(default=4000, ge=1)
    """Random negatives of the first model."""
    max_cached: int = Field(default=30_000, ge=1)
    """The hardest negatives kept when the cache grows beyond this."""
    max_iter: int = Field(default=2000, ge=1)
    """liblinear iterations per fit."""
    chunk: int = Field(default=50_000, ge=1)
    """Negatives scored per mining step."""
    seed: int = 0
    """Seed of the initial negatives and of liblinear."""

    @model_validator(mode="after")
    def _easy_below_hard(self) -> SvmConfig:
        if self.easy_threshold >= self.hard_threshold:
            raise ValueError(
                f"easy_threshold ({self.easy_threshold}) must be below hard_threshold "
                f"({self.hard_threshold}), or every cached negative is dropped at once"
            )
        return self


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
    model: ModelSection = Field(default_factory=ModelSection)
    """Fields of :class:`app.model.config.ModelConfig` (not ``num_classes``: from the data;
    not ``cls_background``: from ``pretrain.background_per_image``)."""
    proposals: ProposalSection = Field(default_factory=ProposalSection)
    """Fields of :class:`app.model.config.ProposalConfig`."""
    detection: DetectionSection = Field(default_factory=DetectionSection)
    """Fields of :class:`app.model.config.DetectionConfig`: the scales the model detects at,
    which the detection stages train at too (the JSON form leaves the section out when the
    recipe does not set it)."""
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    """Classification pre-training."""
    conv_finetune: ConvFinetuneConfig = Field(default_factory=ConvFinetuneConfig)
    """Conv fine-tuning (optional, off by default): conv layers trained through the pooling."""
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    """Fine-tuning fc6-fc8 on the pooled windows."""
    svm: SvmConfig = Field(default_factory=SvmConfig)
    """The SVMs."""
    bbox_alpha: float = Field(default=1000.0, gt=0.0)
    """Ridge penalty of the box regressors."""
    workers: int = Field(default=2, ge=1)
    """Processes for data generation and selective search."""

    @field_serializer("model", "proposals", "detection")
    def _as_written(self, section: BaseModel) -> dict[str, Any]:
        """The ``model`` and ``proposals`` sections keep the fields the recipe wrote (the JSON
        form, and so recorded recipes, stay as they were when these sections were dicts)."""
        written: dict[str, Any] = section.model_dump(mode="json", exclude_unset=True)
        return written

    @model_serializer(mode="wrap")
    def _omit_new_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = _omit_at_default(self, handler(self), ("conv_finetune",))
        if not data.get("detection"):
            data.pop("detection", None)
        return data

    @classmethod
    def from_yaml(cls, path: Path) -> TrainConfig:
        """The recipe in ``path`` (same as :func:`load_recipe`)."""
        return load_recipe(path)

    def to_json(self) -> dict[str, Any]:
        """The recipe as plain JSON data, tuples as lists: every field of the stage sections,
        defaults included; ``model``, ``proposals`` and ``detection`` as written (``detection``
        left out when unset), so recorded recipes compare as they always did."""
        return self.model_dump(mode="json")


def load_recipe(path: Path) -> TrainConfig:
    """Read a recipe from the YAML file ``path``.

    Raises:
        RecipeError: one line naming ``path`` and each offending key when the file is not
            YAML, not a mapping, holds an unknown key, a value of the wrong type or out of
            range, or settings that cannot work together.
    """
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(raw, dict):
        raise RecipeError(
            f"{path}: expected a mapping of recipe sections, got {type(raw).__name__}"
        )
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(_problem(error) for error in exc.errors())
        raise RecipeError(f"{path}: {problems}") from None


def _problem(error: Any) -> str:
    """One validation error as ``section.key: what is wrong`` (unknown keys list the known)."""
    where = ".".join(str(part) for part in error["loc"]) or "recipe"
    if error["type"] != "extra_forbidden":
        return f"{where}: {error['msg'].removeprefix('Value error, ')}"
    section: type[BaseModel] = TrainConfig
    for part in error["loc"][:-1]:
        annotation = section.model_fields[str(part)].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        section = annotation
    known = ", ".join(section.model_fields)
    return f"{where}: unknown key (the keys here are: {known})"
