"""``roi_spp`` with a real backward pass, for training the conv layers through the pyramid.

Max pooling's gradient goes to the cell each pooled value was taken from (Fast R-CNN's RoI
pooling backward). :class:`RoISppFunction` pools on the CPU with the compiled argmax kernel
(``_spp_cpu.roi_spp_argmax_cpu``), keeps the argmax (``[K, C * bins]`` int32, the position
``r * W + c`` in the window's map plane) and in backward adds ``grad_output`` into a zero
gradient at those positions (``_spp_cpu.scatter_grad_cpu``; windows overlap, so cells
accumulate).

* Ties: a bin's gradient goes whole to its *first* maximal cell in row-major order (``amax``
  would split it evenly between the tied cells; the two agree whenever the max is unique).
* NaN: a NaN counts as larger than any number, so the output is NaN wherever ``amax`` gives
  NaN, and the gradient goes to the bin's first NaN cell.
* The forward values are the same bits as ``roi_spp``'s no-grad output.

:func:`app.ops.spp.roi_spp` uses it for CPU maps that need gradients when numba is there;
elsewhere it differentiates through the plain torch path (``_spp_torch``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from app.ops._spp_layout import PyramidLayout

__all__ = ["RoISppFunction"]


class RoISppFunction(torch.autograd.Function):
    """``roi_spp`` on CPU maps, differentiable with respect to ``features`` (argmax backward).

    ``RoISppFunction.apply(features, regions, layout)`` with arguments validated as
    :func:`app.ops.spp.roi_spp` does (K >= 1, regions on the features' device) returns
    Tensor[K, C * layout.total_bins].
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, features: Tensor, regions: Tensor, layout: PyramidLayout
    ) -> Tensor:
        from app.ops._spp_cpu import roi_spp_argmax_cpu

        pooled, argmax = roi_spp_argmax_cpu(features, regions, layout)
        ctx.save_for_backward(regions, argmax)
        ctx.layout = layout
        ctx.feature_shape = tuple(features.shape)
        return pooled

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        from app.ops._spp_cpu import scatter_grad_cpu

        regions, argmax = ctx.saved_tensors
        grad = scatter_grad_cpu(grad_output, regions, argmax, ctx.layout, ctx.feature_shape)
        return grad, None, None
