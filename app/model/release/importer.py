"""The SPP_net release's files -> a model of the store (``spp import spp-net-release``).

:func:`release_manifest_fields` writes into the manifest each way the release's pipeline differs
from docs/model.md: (trunk geometry, scale choice, box scaling and projection, NMS areas, no score
threshold, no calibration); :func:`build_release_net` moves the weights into an
:class:`~app.model.net.SppNet`:

- conv1..conv5 as they are (Caffe's cross-correlation is ``nn.Conv2d``'s);
- fc6 with its input columns permuted from the release's level order (``spm_divs``) to the
  ascending order ``roi_spp`` pools in, fc7 as it is (``det_head``);
- the SVMs on ``ReLU(fc7) * 20 / feat_norm_mean``: ``svm.weight = W``, ``svm.bias = B``,
  ``svm.feature_scale = 20 / feat_norm_mean``;
- the box regressors, when given, folded into one linear map of the pooled vector:
  ``deltas = (20 / norm) pool5 @ (Beta[:-1] T_inv) + (Beta[-1] T_inv + mu)`` (the release's
  ``Y = Beta' [f; 1]``, then ``Y T_inv + mu``), decoded as ours with widths ``x2 - x1``;
  without them the deltas are zero and boxes stay as proposed.

:func:`import_spp_net_release` reads, checks, builds and writes ``store/name`` through a
temporary directory renamed at the end, so a failure leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.model.config import (
    DetectionConfig,
    ModelConfig,
    PreprocessConfig,
    ProposalConfig,
    WindowConfig,
)
from app.model.net import SppNet
from app.model.release.bbox_regressor import BboxRegressor, read_bbox_regressor
from app.model.release.consistency import check_release_consistency
from app.model.release.conv_trunk import (
    RELEASE_INPUT_MEAN,
    RELEASE_LRN_ALPHA,
    RELEASE_LRN_BETA,
    RELEASE_LRN_SIZE,
    RELEASE_TRUNK,
    ReleaseConvTrunk,
    read_release_conv_trunk,
)
from app.model.release.errors import ReleaseFormatError
from app.model.release.layout import pyramid_column_order
from app.model.release.spp_model import SppReleaseModel, read_spp_model
from app.model.store import Manifest, WeightsDtype, save_model, validate_model_name

#: ``spp_demo.m``'s scales (874, not the paper's 864) and the paper's single scale.
RELEASE_SCALES: tuple[int, ...] = (480, 576, 688, 874, 1200)
RELEASE_SINGLE_SCALE = 688
#: The release drops proposals narrower or shorter than this (pixels) before detection.
RELEASE_MIN_BOX_SIDE = 20.0
#: ``spp_detect.m``: ``nms_multiclass(scored_boxes, 0.3)``.
RELEASE_NMS_IOU = 0.3
#: ``spp_scale_features.m``: features are scaled to this mean L2 norm.
SVM_TARGET_NORM = 20.0
#: Pyramid levels whose bins ``roi_spp`` computes as the release's float32 C++ does (for
#: 5 bins, ``3 / 5 * 25`` in float32 rounds above 15 and the two rules part).
SUPPORTED_LEVELS = frozenset({1, 2, 3, 4, 6})
#: Where the release's data package keeps the trunk, relative to ``spp_model.mat``'s folder
#: (``data/spp_model/VOC2007/`` -> ``data/cnn_model/Zeiler_conv5/Zeiler_conv5``).
DEFAULT_CONV_WEIGHTS = Path("..", "..", "cnn_model", "Zeiler_conv5", "Zeiler_conv5")


@dataclass(frozen=True)
class ReleaseParts:
    """The release's files, read and checked to fit together."""

    model: SppReleaseModel
    trunk: ReleaseConvTrunk
    regressor: BboxRegressor | None = None


def check_importable(parts: ReleaseParts) -> None:
    """Raise :class:`ReleaseFormatError` for a release this project's network cannot hold.

    On top of :func:`check_release_consistency`: the SVMs read fc7 (the layer after fc6), the
    pyramid levels are distinct and in :data:`SUPPORTED_LEVELS`, and the box regressors (if
    any) read pool5, not binarised.
    """
    model = parts.model
    check_release_consistency(model, parts.trunk, parts.regressor)
    first = model.first_fc_index
    if model.feature_layer != first + 1:
        raise ReleaseFormatError(
            f"spp_model.training_opts.layer: expected {first + 1} (SVMs on fc7, as the release "
            f"trains them), found {model.feature_layer}"
        )
    divs = model.pooler.spm_divs
    if len(set(divs)) != len(divs) or not set(divs) <= SUPPORTED_LEVELS:
        raise ReleaseFormatError(
            f"spp_model.spp_pooler.spm_divs: expected distinct levels among "
            f"{sorted(SUPPORTED_LEVELS)}, found {list(divs)}"
        )
    regressor = parts.regressor
    if regressor is not None:
        if regressor.feature_layer != first - 1:
            raise ReleaseFormatError(
                f"bbox_reg.training_opts.layer: expected {first - 1} (pool5), "
                f"found {regressor.feature_layer}"
            )
        if regressor.binarize:
            raise ReleaseFormatError("bbox_reg.training_opts.binarize: expected false, found true")


def release_manifest_fields(
    parts: ReleaseParts, scales: Sequence[int] = RELEASE_SCALES
) -> dict[str, Any]:
    """``model``, ``preprocess``, ``detection`` and ``windows`` of the release's manifest."""
    model, pooler = parts.model, parts.model.pooler
    fc6_out, fc7_out = (int(layer.weight.shape[0]) for layer in model.fc_layers[:2])
    c1, c2, c3, c4, c5 = (int(layer.weight.shape[0]) for layer in parts.trunk.layers)
    p1, p2, p3, p4, p5 = (g.pad for g in RELEASE_TRUNK)
    config = ModelConfig(
        num_classes=len(model.classes),
        fc_dim=fc6_out,
        fc7_dim=None if fc7_out == fc6_out else fc7_out,
        levels=tuple(sorted(pooler.spm_divs)),
        lrn_size=RELEASE_LRN_SIZE,
        lrn_alpha=RELEASE_LRN_ALPHA,
        lrn_beta=RELEASE_LRN_BETA,
        channels=(c1, c2, c3, c4, c5),
        conv_pads=(p1, p2, p3, p4, p5),
        pool_pad=0,
        pool_ceil_mode=True,
        classifier=False,
    )
    return {
        "model": config,
        "preprocess": PreprocessConfig(channel_order="BGR", pixel_mean=(RELEASE_INPUT_MEAN,) * 3),
        "detection": DetectionConfig(
            single_scale=RELEASE_SINGLE_SCALE,
            multi_scales=tuple(scales),
            nms_iou=RELEASE_NMS_IOU,
            min_score=None,
            nms_extent="inclusive",
            calibration="none",
            default_scales="multi",
            nms_before_regression=True,
        ),
        "windows": WindowConfig(
            scale_choice="expected_scale",
            target_side=pooler.sz_conv_standard * pooler.step_standard,
            area_extent="inclusive",
            box_scaling="align_corners",
            projection="offset",
            stride=pooler.step_standard,
            offset0=pooler.offset0,
            offset=pooler.offset,
        ),
        "proposals": ProposalConfig(min_size=RELEASE_MIN_BOX_SIDE),
    }


def _folded_regressors(
    regressor: BboxRegressor, order: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The regressors as ``bbox.weight`` [K * 4, D] and ``bbox.bias`` [K * 4] (float64), their
    rows of pool5 features permuted by ``order`` (see :func:`pyramid_column_order`)."""
    weights, biases = [], []
    for one in regressor.models:
        weights.append((one.beta[:-1][order] @ one.t_inv).T)  # [4, D]
        biases.append(one.beta[-1] @ one.t_inv + one.mu)  # [4]
    return np.concatenate(weights), np.concatenate(biases)


def build_release_net(parts: ReleaseParts, config: ModelConfig) -> SppNet:
    """An :class:`SppNet` of ``config`` holding the release's weights (see the module doc)."""
    model = parts.model
    order = pyramid_column_order(model.pooler.spm_divs, config.levels, parts.trunk.out_channels)
    net = SppNet(config).eval()
    state = {name: torch.zeros_like(value) for name, value in net.state_dict().items()}

    def put(name: str, value: np.ndarray | float) -> None:
        array = torch.tensor(np.asarray(value))
        if tuple(array.shape) != tuple(state[name].shape):
            raise ReleaseFormatError(
                f"{name}: expected shape {tuple(state[name].shape)}, found {tuple(array.shape)}"
            )
        state[name] = array.to(state[name].dtype)

    for i, layer in enumerate(parts.trunk.layers, start=1):
        put(f"trunk.conv{i}.weight", layer.weight)
        put(f"trunk.conv{i}.bias", layer.bias)
    fc6, fc7 = model.fc_layers[0], model.fc_layers[1]
    put("det_head.fc6.weight", fc6.weight[:, order])
    put("det_head.fc6.bias", fc6.bias)
    put("det_head.fc7.weight", fc7.weight)
    put("det_head.fc7.bias", fc7.bias)
    put("svm.weight", model.svm_weight)
    put("svm.bias", model.svm_bias)
    put("svm.feature_scale", SVM_TARGET_NORM / model.feat_norm_mean)
    put("platt.a", np.ones(len(model.classes)))  # unused: calibration "none"
    if parts.regressor is not None:
        weight, bias = _folded_regressors(parts.regressor, order)
        put("bbox.weight", weight)
        put("bbox.bias", bias)
        put("bbox.feature_scale", SVM_TARGET_NORM / parts.regressor.feat_norm_mean)
    else:
        put("bbox.feature_scale", 1.0)
    net.load_state_dict(state)
    return net


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_release(
    model_mat: Path, conv_weights: Path | None = None, bbox_regressor: Path | None = None
) -> tuple[ReleaseParts, dict[str, Path]]:
    """Read and check the release's files; ``conv_weights`` defaults to the data package's
    ``data/cnn_model/Zeiler_conv5/Zeiler_conv5`` next to ``model_mat``'s ``data/spp_model``.

    Returns:
        The parts, and the path of each file read (``model_mat``, ``conv_weights`` and maybe
        ``bbox_regressor``).

    Raises:
        ReleaseFormatError: a file unreadable, of the wrong kind, or not fitting the others.
        OSError: a file cannot be opened.
    """
    if conv_weights is None:
        conv_weights = model_mat.parent / DEFAULT_CONV_WEIGHTS
        if not conv_weights.is_file():
            raise ReleaseFormatError(
                f"no --conv-weights given and the release's trunk is not at {conv_weights} "
                "(where its data package puts it next to data/spp_model/VOC2007)"
            )
    files = {"model_mat": model_mat, "conv_weights": conv_weights}
    regressor = None
    if bbox_regressor is not None:
        regressor = read_bbox_regressor(bbox_regressor)
        files["bbox_regressor"] = bbox_regressor
    parts = ReleaseParts(
        model=read_spp_model(model_mat),
        trunk=read_release_conv_trunk(conv_weights),
        regressor=regressor,
    )
    check_importable(parts)
    return parts, files


def import_spp_net_release(
    model_mat: Path | str,
    *,
    name: str,
    store: Path | str,
    conv_weights: Path | str | None = None,
    bbox_regressor: Path | str | None = None,
    scales: Sequence[int] = RELEASE_SCALES,
    dtype: WeightsDtype = "float32",
    command: str | None = None,
) -> Manifest:
    """Import the release's detector as ``store/name`` (``manifest.json`` + weights).

    Args:
        model_mat: ``data/spp_model/VOC2007/spp_model.mat`` (v7 or v7.3).
        name: the model's name in the store (a new directory).
        store: the model store directory (created if missing).
        conv_weights: the Caffe ``Zeiler_conv5``; default: where the data package puts it.
        bbox_regressor: ``bbox_regressor_final.mat``; without it boxes are not regressed.
        scales: the multi-scale set (shorter sides, pixels).
        dtype: weights' type in the file (``float32``, or ``float16`` for half the size).
        command: the command line, recorded as provenance.

    Returns:
        The manifest written.

    Raises:
        ReleaseFormatError: a bad file, a wrong struct, mismatched shapes, or ``store/name``
            already present; nothing is written then.
        OSError: a file cannot be opened or the store cannot be written.
    """
    validate_model_name(name)
    target = Path(store) / name
    if target.exists():
        raise ReleaseFormatError(f"{target} already exists; remove it or choose another --name")
    parts, files = read_release(
        Path(model_mat),
        None if conv_weights is None else Path(conv_weights),
        None if bbox_regressor is None else Path(bbox_regressor),
    )
    fields = release_manifest_fields(parts, scales)
    net = build_release_net(parts, fields["model"])
    training: dict[str, Any] = {"command": command} if command else {}
    training["imported"] = {
        "source": "ShaoqingRen/SPP_net release (SPP_net_release1_data)",
        "files": {key: {"path": str(p), "sha256": _sha256(p)} for key, p in files.items()},
        "spm_divs": list(parts.model.pooler.spm_divs),
        "feat_norm_mean": parts.model.feat_norm_mean,
    }
    if parts.regressor is not None:
        training["imported"]["bbox_feat_norm_mean"] = parts.regressor.feat_norm_mean
    Path(store).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".importing", dir=store))
    try:
        manifest = save_model(
            net,
            staging,
            name=name,
            version="release1",
            classes=parts.model.classes,
            dtype=dtype,
            description=(
                "The SPP_net release's ZF-5 detector (ShaoqingRen/SPP_net), imported from its "
                "Caffe and MATLAB files: SVM scores on fc7, no whole-image classification "
                "head, no calibration (confidence = sigmoid(score))."
            ),
            training=training,
            **{key: value for key, value in fields.items() if key != "model"},
        )
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest
