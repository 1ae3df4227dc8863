"""A slow, plain numpy reference of the SPP_net release's detection on given windows.

Written from the release's MATLAB/C++ sources (ShaoqingRen/SPP_net) and its Caffe fork,
independently of ``app``: it reads only :class:`ReleaseArrays`, the numbers that the synthetic
release files are written from, in the release's own layouts. Everything is float64.

Steps (file that defines each):

1. ``utils/caffe_anysize_test.m``: RGB -> BGR, minus 128; a grey image is replicated.
2. ``model-defs/Zeiler_conv5.prototxt``: conv1 7/2 pad 1, conv2 5/2 pad 0, conv3-5 3/1 pad 1,
   each + ReLU; after conv1 and conv2 a WITHIN_CHANNEL LRN (size 3, alpha 5e-5, beta 0.75) and
   a 3/2 max pool whose output side is ``ceil((a - 3) / 2) + 1`` (Caffe's pooling layer).
3. ``utils/spm_pool/spm_expected_scale.m`` + ``spp_features_convX_to_poolX.m``: per window,
   ``round(sz_conv_standard * step_standard * min_side / sqrt(area))`` with the 1-based
   inclusive area, the scale closest to it (the first one on ties); the window scaled by
   ``(b - 1) * (s - 1) / (min_side - 1) + 1``.
4. ``utils/spm_pool/spm_pool_caffe_mex.cpp``: projection to conv5 cells, then for each level
   of ``spm_divs`` the bins ``floor(i / n * h)`` .. ``ceil((i + 1) / n * h)`` (computed in
   float32, as the C++ does), max over each bin starting from 0, vector laid out level by level,
   channel-major, then bin row, then bin column.
5. ``spp_poolX_to_fcX.m``: ``f = max(0, W f + b)`` for each fc layer up to ``layer``.
6. ``spp_scale_features.m`` + ``spp_detect.m``: ``f * 20 / feat_norm_mean``, score ``W f + B``.
7. ``bbox_regression/spp_predict_bbox_regressor.m`` (and the clipping of
   ``spp_test_bbox_regressor.m``): on the regressor's own layer and norm,
   ``Y = Beta' [f; 1]``, ``Y T_inv + mu``, decoded with widths ``x2 - x1 + eps``.
8. ``nms/nms_multiclass_mex.cpp``: greedy NMS with +1 areas, suppressing overlaps > threshold.

Boxes: the project's ``[x1, y1, x2, y2]`` (0-based, inclusive) is the release's 1-based
``[x1 + 1, ..., y2 + 1]``; the reference converts at its entry and exit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

# (name, kernel, stride, pad, followed by LRN + max pool), from Zeiler_conv5.prototxt
TRUNK = (
    ("conv1", 7, 2, 1, True),
    ("conv2", 5, 2, 0, True),
    ("conv3", 3, 1, 1, False),
    ("conv4", 3, 1, 1, False),
    ("conv5", 3, 1, 1, False),
)
LRN_SIZE, LRN_ALPHA, LRN_BETA = 3, 5e-5, 0.75
POOL_KERNEL, POOL_STRIDE = 3, 2
DATA_MEAN = 128.0
SVM_TARGET_NORM = 20.0
MATLAB_EPS = 2.0**-52


@dataclass
class BboxArrays:
    """What ``bbox_regressor_final.mat`` is written from (``bbox_reg``)."""

    mu: list[np.ndarray]  # per class [1, 4]
    T: list[np.ndarray]  # per class [4, 4]
    T_inv: list[np.ndarray]  # per class [4, 4]
    Beta: list[np.ndarray]  # per class [D + 1, 4]
    layer: int = 5
    feat_norm_mean: float = 1.0


@dataclass
class ReleaseArrays:
    """What the synthetic release files are written from, in the release's own layouts."""

    conv: list[tuple[str, np.ndarray, np.ndarray]]  # conv1..5: (name, W [out,in,k,k], b [out])
    fc: list[tuple[str, np.ndarray, np.ndarray]]  # fc6, fc7, ...: (name, W [out x in], b [out])
    first_fc_idx: int
    spm_divs: tuple[int, ...]
    offset0: float
    offset: float
    step_standard: float
    sz_conv_standard: float
    layer: int  # training_opts.layer
    feat_norm_mean: float
    W: np.ndarray  # detectors.W [K x D]
    B: np.ndarray  # detectors.B [K]
    classes: list[str]
    bbox: BboxArrays | None = None
    extra: dict[str, object] = field(default_factory=dict)


# ------------------------------------------------------------------ 1-2: the conv trunk ------


def caffe_input(image_rgb: np.ndarray) -> np.ndarray:
    """[H, W, 3] (or [H, W]) RGB 0..255 -> [3, H, W] BGR minus 128, float64."""
    image = np.asarray(image_rgb, dtype=np.float64)
    if image.ndim == 2:
        image = np.stack([image, image, image], axis=-1)
    return image[:, :, ::-1].transpose(2, 0, 1) - DATA_MEAN


def conv2d(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray, stride: int, pad: int
) -> np.ndarray:
    """Caffe convolution (cross-correlation). x [C, H, W], weight [O, C, k, k] -> [O, Ho, Wo]."""
    c, h, w = x.shape
    k = weight.shape[2]
    xp = np.zeros((c, h + 2 * pad, w + 2 * pad))
    xp[:, pad : pad + h, pad : pad + w] = x
    ho = (h + 2 * pad - k) // stride + 1
    wo = (w + 2 * pad - k) // stride + 1
    out = np.zeros((weight.shape[0], ho, wo))
    for dy in range(k):
        for dx in range(k):
            patch = xp[
                :,
                dy : dy + stride * (ho - 1) + 1 : stride,
                dx : dx + stride * (wo - 1) + 1 : stride,
            ]
            out += np.einsum("oc,chw->ohw", weight[:, :, dy, dx], patch)
    return out + bias.reshape(-1, 1, 1)


def lrn_within_channel(
    x: np.ndarray, size: int = LRN_SIZE, alpha: float = LRN_ALPHA, beta: float = LRN_BETA
) -> np.ndarray:
    """``x * (1 + alpha / size^2 * sum of x^2 over the size x size window in the map) ** -beta``."""
    c, h, w = x.shape
    half = (size - 1) // 2
    sq = np.zeros((c, h + 2 * half, w + 2 * half))
    sq[:, half : half + h, half : half + w] = x * x
    total = np.zeros_like(x)
    for dy in range(size):
        for dx in range(size):
            total += sq[:, dy : dy + h, dx : dx + w]
    return x * (1.0 + alpha / (size * size) * total) ** (-beta)


def caffe_pool_side(a: int, kernel: int = POOL_KERNEL, stride: int = POOL_STRIDE) -> int:
    """Output side of Caffe's unpadded max pool: ``ceil((a - kernel) / stride) + 1``."""
    return math.ceil((a - kernel) / stride) + 1


def max_pool_ceil(
    x: np.ndarray, kernel: int = POOL_KERNEL, stride: int = POOL_STRIDE
) -> np.ndarray:
    """Caffe max pooling without padding, ceil mode: windows clipped at the bottom/right edge."""
    c, h, w = x.shape
    ho, wo = caffe_pool_side(h, kernel, stride), caffe_pool_side(w, kernel, stride)
    out = np.empty((c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            y0, x0 = i * stride, j * stride
            out[:, i, j] = x[:, y0 : min(y0 + kernel, h), x0 : min(x0 + kernel, w)].max(axis=(1, 2))
    return out


def conv5_features(image_rgb: np.ndarray, arrays: ReleaseArrays) -> np.ndarray:
    """The release trunk on one image (already resized): -> conv5 [C, H5, W5]."""
    x = caffe_input(image_rgb)
    weights = {name: (w, b) for name, w, b in arrays.conv}
    for name, _kernel, stride, pad, lrn_and_pool in TRUNK:
        w, b = weights[name]
        x = np.maximum(conv2d(x, w.astype(np.float64), b.astype(np.float64), stride, pad), 0.0)
        if lrn_and_pool:
            x = max_pool_ceil(lrn_within_channel(x))
    return x


# ------------------------------------------------------------------ 3: scale choice ----------


def matlab_round(x: np.ndarray | float) -> np.ndarray:
    """MATLAB's round: halves away from zero."""
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def expected_scales(boxes1: np.ndarray, min_side: int, arrays: ReleaseArrays) -> np.ndarray:
    """spm_expected_scale.m: boxes1 [N, 4] 1-based inclusive -> [N] scales (integers)."""
    area = (boxes1[:, 2] - boxes1[:, 0] + 1) * (boxes1[:, 3] - boxes1[:, 1] + 1)
    return matlab_round(arrays.sz_conv_standard * arrays.step_standard * min_side / np.sqrt(area))


def choose_scale_indices(
    boxes1: np.ndarray, min_side: int, scales: Sequence[int], arrays: ReleaseArrays
) -> np.ndarray:
    """Index into ``scales`` of the scale closest to each window's expected one (first on ties)."""
    expected = expected_scales(boxes1, min_side, arrays)
    chosen = []
    for e in expected:
        distances = [abs(s - e) for s in scales]
        chosen.append(distances.index(min(distances)))  # the first of equal distances
    return np.array(chosen, dtype=np.int64)


def scale_box(box1: np.ndarray, scale: int, min_side: int) -> np.ndarray:
    """A 1-based box in the image resized so its shorter side is ``scale``."""
    return (box1 - 1) * (scale - 1) / (min_side - 1) + 1


# ------------------------------------------------------------------ 4: projection and pyramid


def project_box(
    box: np.ndarray, map_h: int, map_w: int, arrays: ReleaseArrays
) -> tuple[int, int, int, int]:
    """spm_pool_caffe_mex.cpp: a scaled 1-based box -> (top, left, bottom, right), 1-based cells."""
    x1, y1, x2, y2 = (float(v) for v in box)
    o0, o, step = arrays.offset0, arrays.offset, arrays.step_standard
    left = int(math.floor((x1 - o0 + o) / step + 0.5) + 1)
    top = int(math.floor((y1 - o0 + o) / step + 0.5) + 1)
    right = int(math.ceil((x2 - o0 - o) / step - 0.5) + 1)
    bottom = int(math.ceil((y2 - o0 - o) / step - 0.5) + 1)
    if left > right:
        left = right = int((left + right) / 2)  # C integer division truncates toward zero
    if top > bottom:
        top = bottom = int((top + bottom) / 2)
    top, bottom = (min(map_h, max(1, v)) for v in (top, bottom))
    left, right = (min(map_w, max(1, v)) for v in (left, right))
    return top, left, bottom, right


def bin_range(index: int, divs: int, length: int) -> tuple[int, int]:
    """[start, end) of bin ``index`` of ``divs`` over ``length`` cells, in float32 like the C++."""
    n = np.float32(divs)
    start = math.floor(np.float32(index) / n * np.float32(length))
    end = math.ceil(np.float32(index + 1) / n * np.float32(length))
    return int(start), int(end)


def pool_region(
    conv5: np.ndarray, region: tuple[int, int, int, int], spm_divs: Sequence[int]
) -> np.ndarray:
    """One window's pooled vector from conv5 [C, H, W] and its 1-based (top, left, bottom, right).

    Returns [C * sum(n^2)], levels in ``spm_divs`` order.
    """
    top, left, bottom, right = region
    h, w = bottom - top + 1, right - left + 1
    parts = []
    for n in spm_divs:
        level = np.zeros((conv5.shape[0], n, n))  # the C++ starts every max from 0
        for i in range(n):
            y0, y1 = bin_range(i, n, h)
            for j in range(n):
                x0, x1 = bin_range(j, n, w)
                cells = conv5[:, top - 1 + y0 : top - 1 + y1, left - 1 + x0 : left - 1 + x1]
                level[:, i, j] = np.maximum(cells.max(axis=(1, 2)), 0.0)
        parts.append(level.reshape(-1))  # channel-major, then bin row, then bin column
    return np.concatenate(parts)


# ------------------------------------------------------------------ 5-7: heads --------------


def fc_features(pooled: np.ndarray, arrays: ReleaseArrays, layer: int) -> np.ndarray:
    """spp_poolX_to_fcX.m: pooled [N, D0] -> features of Caffe layer ``layer`` [N, D]."""
    f = pooled.T  # MATLAB keeps one window per column
    for _name, w, b in arrays.fc[: layer - (arrays.first_fc_idx - 1)]:
        f = np.maximum(w.astype(np.float64) @ f + b.astype(np.float64).reshape(-1, 1), 0.0)
    return f.T


def svm_scores(pooled: np.ndarray, arrays: ReleaseArrays) -> np.ndarray:
    """spp_detect.m: pooled [N, D0] -> scores [N, K]."""
    f = fc_features(pooled, arrays, arrays.layer) * (SVM_TARGET_NORM / arrays.feat_norm_mean)
    return (arrays.W.astype(np.float64) @ f.T + arrays.B.astype(np.float64).reshape(-1, 1)).T


def decode_boxes(deltas: np.ndarray, boxes1: np.ndarray) -> np.ndarray:
    """spp_predict_bbox_regressor.m decoding: deltas [N, 4] on 1-based boxes [N, 4], no +1."""
    src_w = boxes1[:, 2] - boxes1[:, 0] + MATLAB_EPS
    src_h = boxes1[:, 3] - boxes1[:, 1] + MATLAB_EPS
    ctr_x = boxes1[:, 0] + 0.5 * src_w + deltas[:, 0] * src_w
    ctr_y = boxes1[:, 1] + 0.5 * src_h + deltas[:, 1] * src_h
    w = np.exp(deltas[:, 2]) * src_w
    h = np.exp(deltas[:, 3]) * src_h
    return np.stack([ctr_x - 0.5 * w, ctr_y - 0.5 * h, ctr_x + 0.5 * w, ctr_y + 0.5 * h], axis=1)


def regress_boxes(
    pooled: np.ndarray, boxes1: np.ndarray, image_hw: tuple[int, int], arrays: ReleaseArrays
) -> np.ndarray:
    """Regressed 1-based boxes [N, K, 4], clipped to [1, width] x [1, height]."""
    bbox = arrays.bbox
    assert bbox is not None
    f = fc_features(pooled, arrays, bbox.layer) * (SVM_TARGET_NORM / bbox.feat_norm_mean)
    out = np.empty((boxes1.shape[0], len(bbox.Beta), 4))
    for k, beta in enumerate(bbox.Beta):
        beta = beta.astype(np.float64)
        y = (beta[:-1].T @ f.T + beta[-1].reshape(-1, 1)).T  # Beta' [f; 1]
        y = y @ bbox.T_inv[k].astype(np.float64) + bbox.mu[k].astype(np.float64).reshape(1, 4)
        out[:, k] = decode_boxes(y, boxes1)
    height, width = image_hw
    out[..., 0] = np.maximum(out[..., 0], 1)
    out[..., 1] = np.maximum(out[..., 1], 1)
    out[..., 2] = np.minimum(out[..., 2], width)
    out[..., 3] = np.minimum(out[..., 3], height)
    return out


# ------------------------------------------------------------------ whole windows ------------


@dataclass
class ReferenceOutput:
    """Reference results for N windows and K classes."""

    scale_index: np.ndarray  # [N] index into the scales given
    regions: list[tuple[int, int, int, int]]  # per window, 1-based (top, left, bottom, right)
    pooled: np.ndarray  # [N, C * sum(n^2)] in spm_divs order
    scores: np.ndarray  # [N, K] raw SVM scores
    boxes: np.ndarray | None  # [N, K, 4] regressed, 0-based project frame; None without bbox


def reference_detect_windows(
    arrays: ReleaseArrays,
    image_rgb: np.ndarray,
    windows: np.ndarray,
    scales: Sequence[int],
    resize: Callable[[np.ndarray, int], np.ndarray],
) -> ReferenceOutput:
    """The release's scores (and regressed boxes) of given windows on one image.

    Args:
        arrays: the release's numbers.
        image_rgb: [H, W, 3] uint8 RGB (or [H, W] grey).
        windows: [N, 4] project boxes (0-based, inclusive).
        scales: shorter-side sizes, in the release's order (480, 576, 688, 874, 1200).
        resize: ``resize(image_rgb, scale)`` -> the image with its shorter side ``scale``;
            the detector under test passes its own resize so that only the release's
            semantics are compared.
    """
    boxes1 = np.asarray(windows, dtype=np.float64).reshape(-1, 4) + 1.0
    if boxes1.shape[0] == 0:
        none = np.zeros((0, len(arrays.classes)))
        boxes = None if arrays.bbox is None else np.zeros((0, len(arrays.classes), 4))
        return ReferenceOutput(np.zeros(0, np.int64), [], np.zeros((0, 0)), none, boxes)
    min_side = min(image_rgb.shape[0], image_rgb.shape[1])
    chosen = choose_scale_indices(boxes1, min_side, scales, arrays)
    conv5 = {int(i): conv5_features(resize(image_rgb, scales[int(i)]), arrays) for i in set(chosen)}
    regions, pooled = [], []
    for box, i in zip(boxes1, chosen, strict=True):
        fmap = conv5[int(i)]
        region = project_box(
            scale_box(box, scales[int(i)], min_side), fmap.shape[1], fmap.shape[2], arrays
        )
        regions.append(region)
        pooled.append(pool_region(fmap, region, arrays.spm_divs))
    pooled_array = np.stack(pooled) if pooled else np.zeros((0, 0))
    scores = svm_scores(pooled_array, arrays)
    boxes = None
    if arrays.bbox is not None:
        boxes = regress_boxes(pooled_array, boxes1, image_rgb.shape[:2], arrays) - 1.0
    return ReferenceOutput(chosen, regions, pooled_array, scores, boxes)


def reference_nms(boxes: np.ndarray, scores: np.ndarray, overlap: float = 0.3) -> list[int]:
    """nms_multiclass_mex.cpp for one class: indices kept, highest score first.

    Overlap uses +1 widths; a box is dropped when its overlap with a kept one is > ``overlap``.
    Among equal scores the later index is taken first (the C++ takes the last of a multimap).
    """
    order = sorted(range(len(scores)), key=lambda i: (scores[i], i))
    area = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    keep: list[int] = []
    while order:
        last = order.pop()
        keep.append(last)
        remaining = []
        for i in order:
            w = max(0.0, min(boxes[last, 2], boxes[i, 2]) - max(boxes[last, 0], boxes[i, 0]) + 1)
            h = max(0.0, min(boxes[last, 3], boxes[i, 3]) - max(boxes[last, 1], boxes[i, 1]) + 1)
            inter = w * h
            if inter / (area[last] + area[i] - inter) <= overlap:
                remaining.append(i)
        order = remaining
    return keep


def reference_test_path(
    scores: np.ndarray,
    windows: np.ndarray,
    boxes: np.ndarray | None,
    max_per_class: int,
    overlap: float = 0.3,
) -> list[tuple[float, np.ndarray]]:
    """The release's test path for one class (``spp_test.m`` then
    ``spp_test_bbox_regressor.m``): the ``max_per_class`` best-scoring windows, NMS on those
    windows unregressed, then the survivors' regressed boxes.

    Args:
        scores: [N] the class's SVM scores.
        windows: [N, 4] the windows (0-based).
        boxes: [N, 4] the class's regressed boxes (0-based), or ``None``: the windows.

    Returns:
        ``(score, box)`` per detection, best first.
    """
    best = sorted(range(len(scores)), key=lambda i: -scores[i])[:max_per_class]
    kept = reference_nms(windows[best].astype(np.float64), scores[best], overlap)
    final = boxes if boxes is not None else windows.astype(np.float64)
    return [(float(scores[best[j]]), final[best[j]]) for j in kept]
