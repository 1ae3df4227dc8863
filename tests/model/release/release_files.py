"""Synthetic SPP_net release files: random small weights written in every format the release uses.

(A module of its own, not conftest.py, so that test modules can import it by a unique name.)

``make_release`` draws the numbers (:class:`ReleaseArrays`); ``spp_model_value`` and
``bbox_reg_value`` lay them out as the MATLAB structs of the release; ``write_caffemodel`` writes
the conv trunk as a binary Caffe NetParameter in the V1, V0-in-V1 or current layout, with packed
or unpacked floats, using the message declarations of ``app.model.release.caffe``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from mat_writers import (
    FunctionHandle,
    write_mat_v7,
    write_mat_v73,
    write_mat_v73_hdf5storage,
)
from reference import TRUNK, BboxArrays, ReleaseArrays

from app.model.release.caffe import (
    CaffeMessages,
    build_caffe_messages,
    caffe_file_descriptor,
    caffe_messages,
)
from app.model.release.matlab import MatCell, MatStruct

MAT_WRITERS = {
    "v7": write_mat_v7,
    "v73": write_mat_v73,
    "v73-hdf5storage": write_mat_v73_hdf5storage,
}
CLASS_NAMES = ["aeroplane", "bicycle", "bird", "boat", "bottle"]


def make_release(
    seed: int = 0,
    *,
    channels: Sequence[int] = (4, 4, 4, 4, 4),
    fc_dims: Sequence[int] = (16, 12),
    spm_divs: Sequence[int] = (1, 2, 3, 6),
    num_classes: int = 3,
    layer: int = 7,
    with_bbox: bool = True,
) -> ReleaseArrays:
    """Random release numbers, scaled so that activations neither vanish nor explode."""
    rng = np.random.default_rng(seed)
    conv, in_ch = [], 3
    for (name, k, _s, _p, _lp), out in zip(TRUNK, channels, strict=True):
        w = rng.normal(0, 1.0 / np.sqrt(in_ch * k * k), (out, in_ch, k, k)) / (
            128 if name == "conv1" else 1
        )
        conv.append((name, w.astype(np.float32), rng.normal(0.1, 0.05, out).astype(np.float32)))
        in_ch = out
    pooled = channels[-1] * sum(n * n for n in spm_divs)
    fc, fan_in = [], pooled
    for i, out in enumerate(fc_dims):
        w = rng.normal(0, 2.0 / np.sqrt(fan_in), (out, fan_in)).astype(np.float32)
        fc.append((f"fc{6 + i}", w, rng.normal(0.05, 0.05, out).astype(np.float32)))
        fan_in = out
    dims = [pooled, *fc_dims]
    feature_dim = dims[layer - 5]
    bbox = None
    if with_bbox:
        t = [np.diag(rng.uniform(1, 3, 4)) + 0.1 * np.eye(4, k=1) for _ in range(num_classes)]
        bbox = BboxArrays(
            mu=[rng.normal(0, 0.05, (1, 4)).astype(np.float32) for _ in range(num_classes)],
            T=[m.astype(np.float32) for m in t],
            T_inv=[np.linalg.inv(m).astype(np.float32) for m in t],
            Beta=[
                rng.normal(0, 0.01, (pooled + 1, 4)).astype(np.float32) for _ in range(num_classes)
            ],
            layer=5,
            feat_norm_mean=float(rng.uniform(5, 50)),
        )
    return ReleaseArrays(
        conv=conv,
        fc=fc,
        first_fc_idx=6,
        spm_divs=tuple(spm_divs),
        offset0=18.0,
        offset=9.5,
        step_standard=16.0,
        sz_conv_standard=13.0,
        layer=layer,
        feat_norm_mean=float(rng.uniform(5, 50)),
        W=rng.normal(0, 0.5, (num_classes, feature_dim)).astype(np.float32),
        B=rng.normal(0, 0.5, num_classes).astype(np.float32),
        classes=CLASS_NAMES[:num_classes],
        bbox=bbox,
    )


def _struct(**fields: Any) -> MatStruct:
    return MatStruct(shape=(1, 1), fields=tuple(fields), elements=(dict(fields),))


def _cell(items: Sequence[Any], shape: tuple[int, int] | None = None) -> MatCell:
    return MatCell(shape=shape or (len(items), 1), elements=tuple(items))


def _scalar(x: float) -> np.ndarray:
    return np.array([[x]], dtype=np.float64)


def spp_model_value(arrays: ReleaseArrays, *, function_handles: bool = False) -> MatStruct:
    """``spp_model`` as spp_train.m saves it (fields it never reads at test time included)."""
    layer_elements = tuple(
        {
            "weights": _cell([w, b.reshape(-1, 1)]),
            "layer_names": name,
            "weights_gpu": np.zeros((0, 0)),
        }
        for name, w, b in arrays.fc
    )
    layers = MatStruct(
        shape=(len(arrays.fc), 1),
        fields=("weights", "layer_names", "weights_gpu"),
        elements=layer_elements,
    )
    pooler: dict[str, Any] = {
        "spm_divs": np.array([arrays.spm_divs], dtype=np.float64),
        "offset0": _scalar(arrays.offset0),
        "offset": _scalar(arrays.offset),
        "step_standard": _scalar(arrays.step_standard),
        "sz_conv_standard": _scalar(arrays.sz_conv_standard),
        "standard_img_size": _scalar(224),
    }
    if function_handles:
        pooler["expected_scale"] = FunctionHandle("spm_expected_scale")
        pooler["response_boxes"] = FunctionHandle("spm_response_boxes")
    return _struct(
        cnn=_struct(
            binary_file="./data/caffe_nets/finetune_voc_2007_trainval_iter_70k",
            definition_file="./model-defs/spp_batch_256_output_fc7.prototxt",
            layers=layers,
            first_fc_idx=_scalar(arrays.first_fc_idx),
            init_key=_scalar(-1),
        ),
        cache_name="Zeiler_conv5_ft(5s_flip)_fc7",
        detectors=_struct(W=arrays.W, B=arrays.B.reshape(-1, 1), nms_thresholds=np.zeros((0, 0))),
        spp_pooler=_struct(**pooler),
        feat_cache=_cell(["Zeiler_conv5"], (1, 1)),
        classes=_cell(list(arrays.classes), (1, len(arrays.classes))),
        training_opts=_struct(
            svm_C=_scalar(1e-3),
            bias_mult=_scalar(10),
            pos_loss_weight=_scalar(2),
            layer=_scalar(arrays.layer),
            checkpoint=_scalar(0),
            imdb_for_negative_mining=_scalar(1),
            neg_ovr_threshs=_cell([np.array([[-1.0, 0.3]])], (1, 1)),
            net_file="./data/caffe_nets/finetune_voc_2007_trainval_iter_70k",
            net_def_file="./model-defs/spp_batch_256_output_fc7.prototxt",
            spp_params_def="./data/cnn_model/Zeiler_conv5/spp_config",
            cache_name="Zeiler_conv5_ft(5s_flip)_fc7",
            feat_norm_mean=_scalar(arrays.feat_norm_mean),
        ),
    )


def bbox_reg_value(arrays: ReleaseArrays) -> MatStruct:
    """``bbox_reg`` as spp_train_bbox_regressor.m saves it."""
    bbox = arrays.bbox
    assert bbox is not None
    models = [
        _struct(mu=bbox.mu[k], T=bbox.T[k], T_inv=bbox.T_inv[k], Beta=bbox.Beta[k])
        for k in range(len(bbox.Beta))
    ]
    return _struct(
        models=_cell(models),
        training_opts=_struct(
            min_overlap=_scalar(0.5),
            layer=_scalar(bbox.layer),
            **{"lambda": _scalar(4000)},
            robust=_scalar(0),
            binarize=np.array([[False]]),
            cache_name="Zeiler_conv5_ft(5s_flip)_fc7",
            feat_norm_mean=_scalar(bbox.feat_norm_mean),
        ),
    )


def write_mat(path: Path, fmt: str, variables: dict[str, Any]) -> Path:
    """Write ``variables`` with one of ``MAT_WRITERS``; returns ``path``."""
    MAT_WRITERS[fmt](path, variables)
    return path


# ------------------------------------------------------------------ Caffe ----------------------


def unpacked_caffe_messages() -> CaffeMessages:
    """The app's declarations with every repeated number declared unpacked (another package)."""
    proto = caffe_file_descriptor()
    old, new = proto.package, proto.package + "_unpacked"
    proto.package, proto.name = new, proto.name.replace(old, new)
    for message in proto.message_type:
        for field in message.field:
            if field.options.packed:
                field.options.packed = False
            if field.type_name:
                field.type_name = field.type_name.replace(f".{old}.", f".{new}.")
    return build_caffe_messages(proto)


def _fill_blob(blob: Any, array: np.ndarray, *, legacy: bool, double: bool) -> None:
    if legacy:
        dims = (1,) * (4 - array.ndim) + tuple(array.shape)
        blob.num, blob.channels, blob.height, blob.width = dims
    else:
        blob.shape.dim.extend(array.shape)
    (blob.double_data if double else blob.data).extend(array.reshape(-1).tolist())


# Unknown fields of a V0 layer as the release's older Caffe wrote them (num_output 3, pad 7,
# kernelsize 8, stride 10): the reader must skip them.
_V0_UNKNOWN = bytes([0x18, 0x60, 0x38, 0x01, 0x40, 0x07, 0x50, 0x02])


def write_caffemodel(
    path: Path,
    conv: Sequence[tuple[str, np.ndarray, np.ndarray]],
    *,
    layout: str = "v1",
    packed: bool = True,
    double: bool = False,
    extra: Sequence[tuple[str, Sequence[np.ndarray]]] = (),
) -> Path:
    """The trunk (and ``extra`` layers) as a binary NetParameter, with weightless layers between."""
    messages = caffe_messages() if packed else unpacked_caffe_messages()
    net = messages.net(name="ImageNet_Zeiler")
    net.input.append("data")
    net.input_dim.extend([1, 3, 224, 224])
    layers: list[tuple[str, list[np.ndarray]]] = []
    for name, w, b in conv:
        layers.append((name, [w, b]))
        layers.append(("relu" + name[-1], []))
    layers.extend((name, list(blobs)) for name, blobs in extra)
    for name, blobs in layers:
        legacy = layout != "current"
        if layout == "current":
            layer = net.layer.add(name=name, type="Convolution" if blobs else "ReLU")
            container = layer.blobs
        elif layout == "v1":
            layer = net.layers.add(name=name, type=4 if blobs else 18)
            container = layer.blobs
        else:  # V0 wrapped in V1
            v1 = net.layers.add()
            v1.bottom.append("data")
            v1.top.append(name)
            v0 = messages.v0_layer(name=name, type="conv" if blobs else "relu")
            v0.MergeFromString(_V0_UNKNOWN)
            v1.layer.CopyFrom(v0)
            container = v1.layer.blobs
        for array in blobs:
            _fill_blob(container.add(), np.asarray(array), legacy=legacy, double=double)
    path.write_bytes(net.SerializeToString())
    return path


def write_release(
    directory: Path,
    arrays: ReleaseArrays,
    *,
    caffe_layout: str = "v1",
    packed: bool = True,
    double: bool = False,
    mat_format: str = "v73",
) -> dict[str, Path]:
    """The release of ``arrays`` as files: ``conv`` (the Caffe trunk), ``spp_model`` and, when
    ``arrays.bbox`` is set, ``bbox_reg`` (written in the same .mat format)."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "conv": write_caffemodel(
            directory / "Zeiler_conv5",
            arrays.conv,
            layout=caffe_layout,
            packed=packed,
            double=double,
        ),
        "spp_model": write_mat(
            directory / "spp_model.mat",
            mat_format,
            {"spp_model": spp_model_value(arrays, function_handles=mat_format == "v73")},
        ),
    }
    if arrays.bbox is not None:
        files["bbox_reg"] = write_mat(
            directory / "bbox_regressor_final.mat", mat_format, {"bbox_reg": bbox_reg_value(arrays)}
        )
    return files
