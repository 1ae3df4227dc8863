"""The release's ``spp_model.mat``: fc layers, pooling parameters, SVMs and class names.

The struct ``spp_model`` is written by ``spp_train.m`` (``save -v7.3``); a copy re-saved as v7
reads the same. The fields used at test time (``spp_detect.m``):

- ``cnn.layers(i).weights{1}`` [out x in] and ``{2}`` [out x 1]: fc6, fc7, ... already
  transposed by ``spp_locate_trans_fc.m``; ``cnn.layers(i).layer_names``; ``cnn.first_fc_idx``
  (6: ``cnn.layers(1)`` is fc6);
- ``spp_pooler``: ``spm_divs``, ``offset0``, ``offset``, ``step_standard``,
  ``sz_conv_standard`` (``spm_pool_caffe_mex.cpp``, ``spm_expected_scale.m``);
- ``training_opts.layer`` (7: the SVMs read ReLU(fc7)) and ``training_opts.feat_norm_mean``;
- ``detectors.W`` [classes x feature dim], ``detectors.B`` [classes x 1] (the bias already
  multiplied by liblinear's bias multiplier);
- ``classes``: a cell of class names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.model.release.errors import ReleaseFormatError
from app.model.release.matlab import MatValue, load_mat_variable
from app.model.release.matlab_access import MatAccess


@dataclass(frozen=True)
class FcLayer:
    """One fully connected layer, applied as ``ReLU(weight @ x + bias)``."""

    name: str  # the Caffe layer name, e.g. "fc6"
    weight: np.ndarray  # float32 [out, in]
    bias: np.ndarray  # float32 [out]


@dataclass(frozen=True)
class SppPooler:
    """The release's window -> conv5 projection and pyramid (``spp_pooler``)."""

    spm_divs: tuple[int, ...]  # bins per side of each level, in pooled-vector order
    offset0: float  # pixels: image position of the first conv5 cell's reference point
    offset: float  # pixels: shrink of the window on each side before projection
    step_standard: float  # pixels per conv5 cell (total stride, 16 for ZF-5)
    sz_conv_standard: float  # conv5 cells of the window that scale choice aims at

    @property
    def bins(self) -> int:
        """Bins of the pyramid, ``sum(n * n)`` (50 for 1, 2, 3, 6)."""
        return sum(n * n for n in self.spm_divs)


@dataclass(frozen=True)
class SppReleaseModel:
    """What ``spp_detect.m`` uses of ``spp_model``, typed and checked for shape."""

    fc_layers: tuple[FcLayer, ...]  # cnn.layers in order: fc6, fc7 (maybe fc8)
    first_fc_index: int  # cnn.first_fc_idx: the number of fc_layers[0] (6)
    pooler: SppPooler
    feature_layer: int  # training_opts.layer: 5 = pool5, 6 = fc6, 7 = fc7, ...
    feat_norm_mean: float  # mean L2 norm of the SVM features before scaling by 20 / it
    svm_weight: np.ndarray  # float32 [K, D], D = dim of the feature layer
    svm_bias: np.ndarray  # float32 [K]
    classes: tuple[str, ...]  # K class names, row k of svm_weight scores classes[k]

    @property
    def pooled_dim(self) -> int:
        """Length of the pooled conv5 vector, fc6's input (12800 for ZF-5)."""
        return int(self.fc_layers[0].weight.shape[1])

    @property
    def feature_fc_layers(self) -> tuple[FcLayer, ...]:
        """The fc layers between pool5 and the SVM features (fc6, fc7 when feature_layer = 7)."""
        return self.fc_layers[: self.feature_layer - self.first_fc_index + 1]


def _fc_layers(access: MatAccess, cnn: MatValue, first_fc_index: int) -> tuple[FcLayer, ...]:
    elements = access.elements(access.field(cnn, "layers", "spp_model.cnn"), "spp_model.cnn.layers")
    if not elements:
        raise ReleaseFormatError(
            f"{access.source}: spp_model.cnn.layers: expected fc layers, found none"
        )
    layers: list[FcLayer] = []
    for i, element in enumerate(elements):
        where = f"spp_model.cnn.layers({i + 1})"
        if "weights" not in element:
            raise ReleaseFormatError(
                f"{access.source}: {where}: expected a field 'weights', found {sorted(element)}"
            )
        cell = access.cell(element["weights"], f"{where}.weights")
        if len(cell.elements) < 2:
            raise access.fail(f"{where}.weights", "a cell {weight, bias}", cell)
        weight = access.matrix(cell.elements[0], f"{where}.weights{{1}}", (None, None))
        out = weight.shape[0]
        bias = access.vector(cell.elements[1], f"{where}.weights{{2}}", out)
        if layers and weight.shape[1] != layers[-1].weight.shape[0]:
            raise ReleaseFormatError(
                f"{access.source}: {where}.weights{{1}}: expected {layers[-1].weight.shape[0]} "
                f"inputs (the outputs of {layers[-1].name}), found a {out}x{weight.shape[1]} matrix"
            )
        name = f"fc{first_fc_index + i}"
        if "layer_names" in element:
            name = access.text(element["layer_names"], f"{where}.layer_names")
        layers.append(
            FcLayer(
                name=name,
                weight=weight.astype(np.float32, copy=False),
                bias=bias.astype(np.float32),
            )
        )
    return tuple(layers)


def _pooler(access: MatAccess, root: MatValue) -> SppPooler:
    divs = access.vector(*access.at(root, "spp_model.spp_pooler.spm_divs"))
    if divs.size == 0 or np.any(divs < 1) or np.any(divs != np.floor(divs)):
        raise ReleaseFormatError(
            f"{access.source}: spp_model.spp_pooler.spm_divs: expected positive integers "
            f"(bins per side), found {divs.tolist()}"
        )
    return SppPooler(
        spm_divs=tuple(int(n) for n in divs),
        offset0=access.number(*access.at(root, "spp_model.spp_pooler.offset0")),
        offset=access.number(*access.at(root, "spp_model.spp_pooler.offset")),
        step_standard=access.positive(*access.at(root, "spp_model.spp_pooler.step_standard")),
        sz_conv_standard=access.positive(*access.at(root, "spp_model.spp_pooler.sz_conv_standard")),
    )


def fc_feature_dim(
    layers: tuple[FcLayer, ...], first_fc_index: int, layer: int, *, what: str
) -> int:
    """Length of the features of Caffe layer number ``layer`` (``first_fc_index - 1`` = pool5).

    Raises:
        ReleaseFormatError: ``layer`` is neither pool5 nor one of ``layers``; ``what`` names it.
    """
    first = first_fc_index
    if not first - 1 <= layer <= first - 1 + len(layers):
        raise ReleaseFormatError(
            f"{what}: expected pool5 ({first - 1}) or one of the fc layers "
            f"{first}..{first + len(layers) - 1}, found {layer}"
        )
    if layer == first - 1:
        return int(layers[0].weight.shape[1])
    return int(layers[layer - first].weight.shape[0])


def spp_model_from_mat(value: MatValue, *, source: str = "spp_model.mat") -> SppReleaseModel:
    """Check and type the MATLAB value of ``spp_model`` (see the module docstring)."""
    access = MatAccess(source)
    first = access.integer(*access.at(value, "spp_model.cnn.first_fc_idx"))
    layers = _fc_layers(access, access.at(value, "spp_model.cnn")[0], first)
    layer = access.integer(*access.at(value, "spp_model.training_opts.layer"))
    dim = fc_feature_dim(layers, first, layer, what=f"{source}: spp_model.training_opts.layer")
    classes = access.texts(*access.at(value, "spp_model.classes"))
    svm_weight = access.matrix(*access.at(value, "spp_model.detectors.W"), (len(classes), dim))
    svm_bias = access.vector(*access.at(value, "spp_model.detectors.B"), len(classes))
    return SppReleaseModel(
        fc_layers=layers,
        first_fc_index=first,
        pooler=_pooler(access, value),
        feature_layer=layer,
        feat_norm_mean=access.positive(*access.at(value, "spp_model.training_opts.feat_norm_mean")),
        svm_weight=svm_weight.astype(np.float32, copy=False),
        svm_bias=svm_bias.astype(np.float32),
        classes=classes,
    )


def read_spp_model(path: str | Path, *, variable: str = "spp_model") -> SppReleaseModel:
    """Read ``spp_model.mat`` (v7 or v7.3) into a checked :class:`SppReleaseModel`.

    Raises:
        ReleaseFormatError: not a readable .mat file, no variable ``variable``, a missing field,
            or shapes that do not fit together (fc chain, W against classes and feature layer).
    """
    return spp_model_from_mat(load_mat_variable(path, variable), source=str(path))
