"""roi_spp's backward pass (``_spp_autograd``) against autograd through the reference loop.

On maps without ties every bin's max is unique, so the argmax backward and ``amax``'s
backward (which splits a tie evenly) must give the same gradient. Ties and NaN are checked
element by element against the documented rule: a bin's whole gradient goes to its first
maximal (or first NaN) cell in row-major order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from references.roi_spp import roi_spp_reference
from torch import Tensor

from app.ops import _spp_cpu
from app.ops._spp_autograd import RoISppFunction
from app.ops.spp import roi_spp

pytestmark = pytest.mark.skipif(not _spp_cpu.available(), reason="needs numba")

GRAD_DTYPES = [torch.float32, torch.float64]
LEVEL_SETS = [(1, 2, 3, 6), (1, 4), (6, 3, 2, 1), (2, 2), (7,)]


def assert_exact(actual: Tensor, expected: Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=0, atol=0, equal_nan=True)


def weighted_grads(
    pool: Callable[[Tensor, Tensor, Sequence[int]], Tensor],
    features: Tensor,
    regions: Tensor,
    levels: Sequence[int],
    weights_seed: int,
    weights_dtype: torch.dtype | None = None,
) -> tuple[Tensor, Tensor]:
    """``(pooled, d/d features of (pool(features) * w).sum())`` for random weights ``w``
    (rounded to ``weights_dtype``, by default the features' dtype)."""
    leaf = features.detach().clone().requires_grad_()
    pooled = pool(leaf, regions, levels)
    gen = torch.Generator().manual_seed(weights_seed)
    weights = torch.randn(pooled.shape, generator=gen).to(weights_dtype or features.dtype)
    weights = weights.to(features.dtype)
    (pooled * weights).sum().backward()
    assert leaf.grad is not None
    return pooled.detach(), leaf.grad


def assert_grads_match_reference(features: Tensor, regions: Tensor, levels: Sequence[int]) -> None:
    pooled, grad = weighted_grads(roi_spp, features, regions, levels, weights_seed=7)
    expected_pooled, expected_grad = weighted_grads(
        roi_spp_reference, features, regions, levels, weights_seed=7
    )
    assert_exact(pooled, expected_pooled)
    assert_exact(pooled, roi_spp(features.detach(), regions, levels))  # the no-grad fast path
    torch.testing.assert_close(grad, expected_grad)  # sums in another order: rounding only


@pytest.mark.parametrize("dtype", GRAD_DTYPES)
@pytest.mark.parametrize("levels", [(1, 2, 3, 6), (1, 4)])
@pytest.mark.parametrize("seed", [0, 1])
def test_grad_matches_reference_on_random_and_edge_windows(
    dtype: torch.dtype,
    levels: tuple[int, ...],
    seed: int,
    make_map: Callable[..., Tensor],
    random_regions: Callable[..., Tensor],
    edge_regions: Callable[..., Tensor],
) -> None:
    features = make_map(3, 6, 11, 14, dtype, seed)
    # edge regions: 1x1 windows in the corners and the middle, whole maps, rows, columns
    regions = torch.cat([random_regions(3, 11, 14, 60, seed), edge_regions(3, 11, 14)])
    assert_grads_match_reference(features, regions, levels)


@pytest.mark.parametrize("levels", LEVEL_SETS)
def test_grad_matches_reference_for_any_levels(
    levels: tuple[int, ...],
    make_map: Callable[..., Tensor],
    random_regions: Callable[..., Tensor],
) -> None:
    features = make_map(2, 5, 12, 9, torch.float64, seed=4)
    assert_grads_match_reference(features, random_regions(2, 12, 9, 25, 4), levels)


def test_grad_of_a_channels_last_map(
    make_map: Callable[..., Tensor], edge_regions: Callable[..., Tensor]
) -> None:
    features = make_map(2, 8, 7, 10, torch.float32, seed=5)
    regions = edge_regions(2, 7, 10)
    assert_grads_match_reference(features.to(memory_format=torch.channels_last), regions, (1, 3))
    sliced = make_map(2, 16, 7, 10, torch.float32, seed=5)[:, ::2]  # non-contiguous channels
    assert_grads_match_reference(sliced, regions, (1, 2, 3, 6))


@settings(max_examples=30, deadline=None)
@given(
    data=st.data(),
    batch=st.integers(1, 3),
    channels=st.integers(1, 6),
    height=st.integers(1, 12),
    width=st.integers(1, 12),
    levels=st.sampled_from(LEVEL_SETS),
    seed=st.integers(0, 2**16),
)
def test_grad_hypothesis(
    data: st.DataObject,
    batch: int,
    channels: int,
    height: int,
    width: int,
    levels: tuple[int, ...],
    seed: int,
) -> None:
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(batch, channels, height, width, generator=gen, dtype=torch.float64)
    windows = data.draw(
        st.lists(
            st.tuples(
                st.integers(0, batch - 1),
                st.integers(0, width - 1),
                st.integers(0, width - 1),
                st.integers(0, height - 1),
                st.integers(0, height - 1),
            ),
            min_size=1,
            max_size=12,
        )
    )
    regions = torch.tensor(
        [(b, min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)) for b, x0, x1, y0, y1 in windows],
        dtype=torch.int64,
    )
    assert_grads_match_reference(features, regions, levels)


def test_gradcheck_float64() -> None:
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(2, 3, 5, 6, generator=gen, dtype=torch.float64).requires_grad_()
    regions = torch.tensor(
        [[0, 0, 0, 5, 4], [1, 2, 1, 2, 1], [1, 1, 0, 4, 3], [0, 3, 2, 5, 4], [0, 0, 0, 5, 4]]
    )
    assert torch.autograd.gradcheck(lambda f: roi_spp(f, regions, (1, 2, 3)), (features,))


def test_the_argmax_function_is_the_grad_path(
    make_map: Callable[..., Tensor], random_regions: Callable[..., Tensor]
) -> None:
    leaf = make_map(1, 4, 8, 8, torch.float32, seed=8).requires_grad_()
    regions = random_regions(1, 8, 8, 10, 8)
    pooled = roi_spp(leaf, regions)
    assert isinstance(pooled.grad_fn, RoISppFunction._backward_cls)
    with torch.no_grad():
        assert roi_spp(leaf, regions).grad_fn is None
    pooled.sum().backward()
    assert leaf.grad is not None
    assert leaf.grad.sum() == 10 * 4 * 50  # every output's unit gradient lands somewhere


# ---------------------------------------------------------------------------------------------
# ties and NaN: element by element


def output_bins(
    region: Sequence[int], levels: Sequence[int], channels: int
) -> list[tuple[int, int, int, int, int, int]]:
    """Per output column of ``region``'s row: ``(column, channel, row_start, row_end,
    col_start, col_end)``, written out from the bin rule and the layout (docs/model.md §2)."""
    _, left, top, right, bottom = region
    h, w = bottom - top + 1, right - left + 1
    bins = []
    offset = 0  # bins of the levels before
    for n in levels:
        for c in range(channels):
            for i in range(n):
                for j in range(n):
                    column = offset * channels + c * n * n + i * n + j
                    rows = (top + (i * h) // n, top + ((i + 1) * h + n - 1) // n)
                    cols = (left + (j * w) // n, left + ((j + 1) * w + n - 1) // n)
                    bins.append((column, c, *rows, *cols))
        offset += n * n
    return bins


def expected_cell(block: Tensor) -> tuple[int, int]:
    """The first NaN of ``block [h, w]`` in row-major order, else its first maximal cell."""
    nan = block.isnan()
    chosen = nan if bool(nan.any()) else block == block.max()
    flat = int(chosen.flatten().nonzero()[0, 0])
    return flat // block.shape[1], flat % block.shape[1]


def tie_map(kind: str) -> Tensor:
    """``[2, 2, 7, 9]``: one value everywhere, three values (ties in most bins), or three
    values and six NaNs."""
    gen = torch.Generator().manual_seed(9)
    if kind == "constant":
        return torch.full((2, 2, 7, 9), 0.5)
    few_values = torch.randint(0, 3, (2, 2, 7, 9), generator=gen).float()
    if kind == "nan":
        few_values.view(-1)[torch.randperm(few_values.numel(), generator=gen)[:6]] = float("nan")
    return few_values


@pytest.mark.parametrize("kind", ["constant", "few values", "nan"])
def test_each_output_sends_its_whole_gradient_to_the_first_max_cell(
    kind: str, edge_regions: Callable[..., Tensor], random_regions: Callable[..., Tensor]
) -> None:
    features = tie_map(kind)
    levels = (1, 2, 3, 6)
    regions = torch.cat([edge_regions(2, 7, 9)[::2], random_regions(2, 7, 9, 12, 9)])
    leaf = features.clone().requires_grad_()
    pooled = roi_spp(leaf, regions, levels)
    assert_exact(pooled.detach(), roi_spp_reference(features, regions, levels))
    for k, region in enumerate(regions.tolist()):
        for column, c, r0, r1, c0, c1 in output_bins(region, levels, features.shape[1]):
            (grad,) = torch.autograd.grad(pooled[k, column], leaf, retain_graph=True)
            row, col = expected_cell(features[region[0], c, r0:r1, c0:c1])
            expected = torch.zeros_like(features)
            expected[region[0], c, r0 + row, c0 + col] = 1.0  # mass 1, on one cell
            assert_exact(grad, expected)


def test_tie_across_finer_bins_goes_to_the_first_cell_in_row_major_order() -> None:
    # The 1x1 level is derived from the 2x2 one: the max 1.0 is in its bin (0, 0) at cell
    # (1, 0) and in bin (0, 1) at cell (0, 2). Row-major order puts (0, 2) first.
    features = torch.zeros(1, 1, 4, 4)
    features[0, 0, 1, 0] = features[0, 0, 0, 2] = 1.0
    leaf = features.clone().requires_grad_()
    pooled = roi_spp(leaf, torch.tensor([[0, 0, 0, 3, 3]]), (1, 2))
    (grad,) = torch.autograd.grad(pooled[0, 0], leaf)
    expected = torch.zeros_like(features)
    expected[0, 0, 0, 2] = 1.0
    assert_exact(grad, expected)


# ---------------------------------------------------------------------------------------------
# dtypes and threads


def test_bfloat16_grad_is_the_float32_grad_rounded(
    make_map: Callable[..., Tensor], random_regions: Callable[..., Tensor]
) -> None:
    """float16/bfloat16 gradients are summed in float32 and rounded once."""
    features = make_map(2, 5, 9, 8, torch.bfloat16, seed=10)
    regions = random_regions(2, 9, 8, 30, 10)
    pooled, grad = weighted_grads(roi_spp, features, regions, (1, 2, 3, 6), 3)
    wide_pooled, wide_grad = weighted_grads(
        roi_spp, features.float(), regions, (1, 2, 3, 6), 3, weights_dtype=torch.bfloat16
    )
    assert pooled.dtype == grad.dtype == torch.bfloat16
    assert_exact(pooled, roi_spp_reference(features, regions))
    assert_exact(pooled.float(), wide_pooled)
    assert_exact(grad, wide_grad.to(torch.bfloat16))


@pytest.mark.skipif(
    __import__("numba").config.NUMBA_NUM_THREADS < 2, reason="numba has fewer than 2 threads"
)
def test_grad_same_bits_on_1_and_2_threads(
    make_map: Callable[..., Tensor], random_regions: Callable[..., Tensor]
) -> None:
    features = make_map(2, 32, 13, 17, torch.float32, seed=15)
    regions = random_regions(2, 13, 17, 301, 15)
    threads = torch.get_num_threads()
    try:
        grads = {}
        for count in (1, 2):
            torch.set_num_threads(count)
            grads[count] = weighted_grads(roi_spp, features, regions, (1, 2, 3, 6), 5)
    finally:
        torch.set_num_threads(threads)
    assert_exact(grads[2][0], grads[1][0])
    assert_exact(grads[2][1], grads[1][1])
