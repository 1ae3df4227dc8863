"""The release's optional ``bbox_regressor_final.mat``: one ridge regressor per class.

The struct ``bbox_reg`` is written by ``bbox_regression/spp_train_bbox_regressor.m``:
``models{k}`` with ``mu`` [1 x 4], ``T`` and ``T_inv`` [4 x 4] and ``Beta`` [(D + 1) x 4] (the
last row multiplies a constant 1), and ``training_opts`` with ``layer`` (5: pool5 features),
``feat_norm_mean`` (its own norm) and ``binarize``. At test time
(``spp_predict_bbox_regressor.m``), for a window's features ``f`` (scaled by 20 / norm):
``Y = Beta' [f; 1]``, then ``Y' T_inv + mu`` gives (dx, dy, log sw, log sh) relative to the
window's centre and size, sizes taken as ``x2 - x1`` (no +1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.model.release.matlab import MatValue, load_mat_variable
from app.model.release.matlab_access import MatAccess


@dataclass(frozen=True)
class ClassBoxRegressor:
    """One class's regressor (float64; the file stores MATLAB single or double)."""

    mu: np.ndarray  # [4] mean of the training targets (dx, dy, dw, dh)
    t: np.ndarray  # [4, 4] whitening of the targets
    t_inv: np.ndarray  # [4, 4] its inverse, applied at test time
    beta: np.ndarray  # [D + 1, 4] ridge weights; row D multiplies the constant 1


@dataclass(frozen=True)
class BboxRegressor:
    """All classes' regressors and the features they read."""

    models: tuple[ClassBoxRegressor, ...]  # one per class, in spp_model.classes order
    feature_layer: int  # training_opts.layer: 5 = pool5 (the release), 6 = fc6, ...
    feat_norm_mean: float  # the regressor's own feature norm: features are scaled 20 / it
    binarize: bool  # training_opts.binarize: features replaced by (f > 0) (false in the release)

    @property
    def feature_dim(self) -> int:
        """D, the length of the features each regressor reads."""
        return int(self.models[0].beta.shape[0] - 1)


def _class_model(
    access: MatAccess, value: MatValue, where: str, dim: int | None
) -> ClassBoxRegressor:
    def get(name: str) -> tuple[MatValue, str]:
        return access.field(value, name, where), f"{where}.{name}"

    beta = access.matrix(*get("Beta"), (None if dim is None else dim + 1, 4))
    if beta.shape[0] < 2:
        raise access.fail(f"{where}.Beta", "a (D+1)x4 matrix with D >= 1", beta)
    return ClassBoxRegressor(
        mu=access.vector(*get("mu"), 4).astype(np.float64),
        t=access.matrix(*get("T"), (4, 4)).astype(np.float64),
        t_inv=access.matrix(*get("T_inv"), (4, 4)).astype(np.float64),
        beta=beta.astype(np.float64),
    )


def bbox_regressor_from_mat(
    value: MatValue, *, source: str = "bbox_regressor_final.mat"
) -> BboxRegressor:
    """Check and type the MATLAB value of ``bbox_reg`` (see the module docstring)."""
    access = MatAccess(source)
    cell = access.cell(*access.at(value, "bbox_reg.models"))
    if not cell.elements:
        raise access.fail("bbox_reg.models", "one model per class", cell)
    models: list[ClassBoxRegressor] = []
    for i, element in enumerate(cell.elements):
        dim = models[0].beta.shape[0] - 1 if models else None
        models.append(_class_model(access, element, f"bbox_reg.models{{{i + 1}}}", dim))
    opts = access.struct(*access.at(value, "bbox_reg.training_opts"))
    binarize = "binarize" in opts and bool(
        access.number(*access.at(value, "bbox_reg.training_opts.binarize"))
    )
    return BboxRegressor(
        models=tuple(models),
        feature_layer=access.integer(*access.at(value, "bbox_reg.training_opts.layer")),
        feat_norm_mean=access.positive(*access.at(value, "bbox_reg.training_opts.feat_norm_mean")),
        binarize=binarize,
    )


def read_bbox_regressor(path: str | Path, *, variable: str = "bbox_reg") -> BboxRegressor:
    """Read ``bbox_regressor_final.mat`` (v7 or v7.3) into a checked :class:`BboxRegressor`.

    Raises:
        ReleaseFormatError: not a readable .mat file, no variable ``variable``, a missing field,
            or a model whose shapes differ from the others'.
    """
    return bbox_regressor_from_mat(load_mat_variable(path, variable), source=str(path))
