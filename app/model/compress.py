"""Truncated-SVD compression of the fc6/fc7 detection head (as in Fast R-CNN, section 3.1).

A fully connected layer ``y = W x + b`` with ``W [out, in]`` is factorised as
``W = U S V^T`` and truncated to the ``r`` largest singular values, ``W ~= U_r S_r V_r^T``; the
layer becomes two: ``z = (S_r V_r^T) x`` (``r`` outputs, no bias) and ``y = U_r z + b``. The
multiply-adds per window drop from ``out * in`` to ``r * (in + out)``, so the fc stage is faster
whenever ``r < out * in / (in + out)``; the first layer absorbs ``S_r`` exactly as Fast R-CNN
does. At full rank (``r = min(in, out)``) the two layers reproduce the original up to float
rounding.

The compressed model lives in memory only: its state dict has other keys, so it is not written
with :func:`app.model.store.save_model` (compression takes seconds at load time instead).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from app.model.heads import FcHead
from app.model.store import SppModel

__all__ = ["LowRankLinear", "compress_detector_model", "low_rank_linear", "svd_compress_head"]


class LowRankLinear(nn.Module):
    """``y = expand(reduce(x))``: a rank-``r`` stand-in for ``nn.Linear(in_dim, out_dim)``.

    ``reduce``: ``Linear(in_dim, rank, bias=False)``; ``expand``: ``Linear(rank, out_dim)``.
    Input ``Tensor[N, in_dim]``, output ``Tensor[N, out_dim]``.
    """

    def __init__(self, in_dim: int, out_dim: int, rank: int) -> None:
        super().__init__()
        self.reduce = nn.Linear(in_dim, rank, bias=False)
        self.expand = nn.Linear(rank, out_dim)

    @property
    def rank(self) -> int:
        return self.reduce.out_features

    @property
    def in_features(self) -> int:
        return self.reduce.in_features

    @property
    def out_features(self) -> int:
        return self.expand.out_features

    def forward(self, x: Tensor) -> Tensor:
        return self.expand(self.reduce(x))


def _check_rank(name: str, rank: int, layer: nn.Linear) -> int:
    limit = min(layer.in_features, layer.out_features)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= limit:
        raise ValueError(
            f"expected {name} to be an integer in [1, {limit}] "
            f"(min of {layer.out_features} x {layer.in_features}), got {rank!r}"
        )
    return rank


@torch.no_grad()
def low_rank_linear(
    layer: nn.Linear, rank: int, *, compute_dtype: torch.dtype = torch.float64
) -> LowRankLinear:
    """The truncated-SVD factorisation of ``layer`` at ``rank``.

    Args:
        layer: a linear layer with weight ``[out, in]`` (and a bias or not).
        rank: singular values kept, ``1 <= rank <= min(out, in)``.
        compute_dtype: dtype of the SVD (float64 by default, so that full rank reproduces the
            layer to float32 rounding; float32 is about twice as fast for large layers).

    Returns:
        A :class:`LowRankLinear` on ``layer``'s device and in its dtype.
    """
    rank = _check_rank("rank", rank, layer)
    weight = layer.weight
    u, s, vh = torch.linalg.svd(weight.to(compute_dtype), full_matrices=False)  # [o,k] [k] [k,i]
    out = LowRankLinear(layer.in_features, layer.out_features, rank)
    out.reduce.weight.copy_(s[:rank, None] * vh[:rank])  # [r, in]: S_r V_r^T
    out.expand.weight.copy_(u[:, :rank])  # [out, r]: U_r
    if layer.bias is not None:
        out.expand.bias.copy_(layer.bias)
    else:
        out.expand.bias.zero_()
    return out.to(device=weight.device, dtype=weight.dtype)


def svd_compress_head(
    head: FcHead,
    rank6: int | None,
    rank7: int | None,
    *,
    compute_dtype: torch.dtype = torch.float64,
) -> FcHead:
    """A copy of ``head`` whose fc6 and/or fc7 are truncated-SVD factorisations.

    Args:
        head: the fc6/fc7 head (left untouched).
        rank6: rank kept in fc6 (``None``: fc6 is copied as it is).
        rank7: rank kept in fc7 (``None``: fc7 is copied as it is).
        compute_dtype: dtype of the SVDs (see :func:`low_rank_linear`).

    Returns:
        A new :class:`FcHead` (same dropout, same train/eval mode), input ``Tensor[N, D]``,
        output ``Tensor[N, F]``, as the original.
    """
    if not isinstance(head.fc6, nn.Linear) or not isinstance(head.fc7, nn.Linear):
        raise ValueError(
            "expected a head whose fc6 and fc7 are nn.Linear (not already compressed), got "
            f"{type(head.fc6).__name__} and {type(head.fc7).__name__}"
        )
    if rank6 is not None:
        _check_rank("rank6", rank6, head.fc6)
    if rank7 is not None:
        _check_rank("rank7", rank7, head.fc7)
    compressed = copy.deepcopy(head)
    # add_module replaces the registered child of the same name; forward calls self.fc6/fc7.
    if rank6 is not None:
        compressed.add_module("fc6", low_rank_linear(head.fc6, rank6, compute_dtype=compute_dtype))
    if rank7 is not None:
        compressed.add_module("fc7", low_rank_linear(head.fc7, rank7, compute_dtype=compute_dtype))
    return compressed.train(head.training).requires_grad_(False)


def compress_detector_model(
    model: SppModel,
    rank6: int | None,
    rank7: int | None,
    *,
    compute_dtype: torch.dtype = torch.float64,
) -> SppModel:
    """A copy of ``model`` whose detection head (``net.det_head``) is SVD-compressed.

    The classification head, SVMs, regressors and the trunk are copied unchanged; ``model`` is
    not modified. The manifest's description notes the ranks. ``Detector`` runs the result as
    it is (``FcHead.forward`` calls ``fc6`` and ``fc7``, whatever their kind).
    """
    head = svd_compress_head(model.net.det_head, rank6, rank7, compute_dtype=compute_dtype)
    net = copy.deepcopy(model.net)
    net.add_module("det_head", head)
    note = f"det_head fc6/fc7 SVD-compressed to ranks {rank6}/{rank7} (in memory)"
    description = f"{model.manifest.description}; {note}" if model.manifest.description else note
    manifest = model.manifest.model_copy(update={"description": description})
    return SppModel(manifest=manifest, net=net)
