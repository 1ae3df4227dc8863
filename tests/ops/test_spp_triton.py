"""The Triton ``roi_spp`` kernel against the reference loop, exactly.

On any machine the kernel runs in Triton's interpreter: a private copy of
``app/ops/_spp_triton.py`` is loaded while ``TRITON_INTERPRET=1`` is set, so its ``@triton.jit``
produces an interpreted kernel that takes CPU tensors (the ``app.ops._spp_triton`` module used
by ``roi_spp`` is untouched). With CUDA, the real kernel runs too (the ``cuda`` param).
The interpreter runs one program at a time, so the inputs are small.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch
from references.roi_spp import roi_spp_reference
from torch import Tensor

import app.ops
from app.ops._spp_layout import pyramid_layout

triton = pytest.importorskip("triton")

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
TRITON_RUNS = [
    "interpreter",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.gpu,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
        ],
    ),
]


@pytest.fixture(scope="module")
def interpreted_module() -> Iterator[ModuleType]:
    """A copy of ``_spp_triton`` whose kernel was decorated under ``TRITON_INTERPRET=1``."""
    path = Path(app.ops.__file__).parent / "_spp_triton.py"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRITON_INTERPRET", "1")
        spec = importlib.util.spec_from_file_location("_spp_triton_interpreted", path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module


@pytest.fixture(params=TRITON_RUNS)
def pool(
    request: pytest.FixtureRequest, interpreted_module: ModuleType
) -> Callable[[Tensor, Tensor, tuple[int, ...]], Tensor]:
    """``(features, regions, levels) -> pooled`` on CPU tensors, by one Triton launch."""
    if request.param == "interpreter":

        def run(features: Tensor, regions: Tensor, levels: tuple[int, ...]) -> Tensor:
            layout = pyramid_layout(levels)
            return interpreted_module.roi_spp_triton(features, regions, layout)

        return run

    from app.ops.spp import roi_spp  # dispatches to the compiled kernel on CUDA

    def run_cuda(features: Tensor, regions: Tensor, levels: tuple[int, ...]) -> Tensor:
        return roi_spp(features.cuda(), regions.cuda(), levels).cpu()

    return run_cuda


def assert_exact(actual: Tensor, expected: Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=0, atol=0, equal_nan=True)


def test_the_interpreter_is_in_use(interpreted_module: ModuleType) -> None:
    assert type(interpreted_module._roi_spp_kernel).__name__ == "InterpretedFunction"


@pytest.mark.parametrize("dtype", DTYPES)
def test_triton_matches_reference_on_edge_regions(
    dtype: torch.dtype,
    pool: Callable[..., Tensor],
    make_map: Callable[..., Tensor],
    edge_regions: Callable[..., Tensor],
) -> None:
    features = make_map(2, 3, 7, 9, dtype, seed=10)
    regions = edge_regions(2, 7, 9)[::2]  # both images, every other case: keeps it quick
    pooled = pool(features, regions, (1, 2, 3, 6))
    assert pooled.dtype == dtype
    assert pooled.shape == (len(regions), 3 * 50)
    assert_exact(pooled, roi_spp_reference(features, regions))


def test_triton_matches_reference_with_channel_blocks_and_other_levels(
    pool: Callable[..., Tensor],
    make_map: Callable[..., Tensor],
    random_regions: Callable[..., Tensor],
) -> None:
    # 300 channels: two blocks of 256, the second one masked; levels in another order.
    features = make_map(2, 300, 5, 6, torch.float32, seed=11)
    regions = random_regions(2, 5, 6, 3, 11)
    levels = (3, 1, 2)
    assert_exact(pool(features, regions, levels), roi_spp_reference(features, regions, levels))


def test_triton_propagates_nan_like_amax(
    pool: Callable[..., Tensor], make_map: Callable[..., Tensor]
) -> None:
    features = make_map(1, 2, 4, 4, torch.float32, seed=12)
    features[0, 1, 0, 0] = float("nan")
    regions = torch.tensor([[0, 0, 0, 3, 3], [0, 1, 1, 3, 3]])
    pooled = pool(features, regions, (1, 2))
    assert bool(pooled[0].isnan().any())
    assert not bool(pooled[1].isnan().any())
    assert_exact(pooled, roi_spp_reference(features, regions, (1, 2)))


@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16", "fp64"])
def test_triton_kernel_compiles_for_a_gpu_target(
    dtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The interpreter is lenient (globals, loop-carried dtypes): compile the real kernel for an
    H100 (sm_90) ahead of time, which needs no GPU, to catch what only the compiler rejects."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # set while the interpreter tests run
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from app.ops import _spp_triton

    signature = {
        "feat_ptr": f"*{dtype}",
        "regions_ptr": "*i64",
        "bins_ptr": "*i64",
        "out_ptr": f"*{dtype}",
        **dict.fromkeys(["channels", "out_stride", "stride_b", "stride_h", "stride_w"], "i32"),
        "BIN_FIELDS": "constexpr",
        "BLOCK_C": "constexpr",
    }
    source = ASTSource(
        fn=_spp_triton._roi_spp_kernel,
        signature=signature,
        constexprs={"BIN_FIELDS": _spp_triton._BIN_FIELDS, "BLOCK_C": 256},
    )
    compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
    assert compiled.asm["cubin"]
