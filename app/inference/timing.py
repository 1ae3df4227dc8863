"""The one stage timer: wall time of a block, added to a caller-owned dict of milliseconds."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def timed(
    timings: dict[str, float] | None, stage: str, device: torch.device | None = None
) -> Iterator[None]:
    """Add the block's wall time (ms, rounded to µs) to ``timings[stage]``.

    ``timings`` belongs to the caller (one dict per call or request), so concurrent calls never
    share a timer; ``None`` times nothing. On a CUDA ``device`` the device is synchronised before
    and after the block, so asynchronous kernels are counted in the stage that launched them.
    """
    if timings is None:
        yield
        return
    cuda = device is not None and device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    try:
        yield
        if cuda:
            torch.cuda.synchronize(device)
    finally:
        elapsed = (time.perf_counter() - start) * 1000.0
        timings[stage] = round(timings.get(stage, 0.0) + elapsed, 3)
