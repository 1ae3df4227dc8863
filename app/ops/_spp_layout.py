"""Pyramid layout shared by the pooling back-ends (docs/model.md §2).

The output of pyramid pooling is the concatenation, in the order the levels are given, of each
level's ``[C, n, n]`` block flattened channel-major. A level's *bins* are numbered ``i * n + j``
(row ``i``, column ``j``) and its block starts at ``C * bin_offset``, where ``bin_offset`` is the
number of bins of the levels before it.

Coarse levels whose ``n`` divides a finer level's ``m`` need no pass over the feature map: with
the bin rule ``[floor(i*h/n), ceil((i+1)*h/n))``, bin ``i`` of level ``n`` is exactly the union of
bins ``i*r .. i*r + r - 1`` of level ``m = r * n`` (the first starts at ``floor(i*r*h/m) =
floor(i*h/n)``, the last ends at ``ceil((i+1)*h/n)``, and consecutive bins touch or overlap), so
its max is the max of those ``r * r`` finer bins. For the paper's levels (1, 2, 3, 6) only the
6 x 6 level reads the map.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["PyramidLayout", "pyramid_layout", "validate_levels"]


def validate_levels(levels: Sequence[int]) -> tuple[int, ...]:
    """Return ``levels`` as a tuple of positive ints, or raise ``ValueError``."""
    try:
        values = tuple(levels)
    except TypeError:
        message = f"levels must be a sequence of positive integers, got {levels!r}"
        raise ValueError(message) from None
    if not values:
        raise ValueError("levels must not be empty")
    checked = []
    for n in values:
        if isinstance(n, bool):
            raise ValueError(f"levels must be positive integers, got {values!r}")
        try:
            value = operator.index(n)
        except TypeError:
            raise ValueError(f"levels must be positive integers, got {values!r}") from None
        if value < 1:
            raise ValueError(f"levels must be positive integers, got {values!r}")
        checked.append(value)
    return tuple(checked)


@dataclass(frozen=True)
class PyramidLayout:
    """Where each level lives in the pooled vector, and how it is computed.

    Attributes:
        levels: bins per side, in output order.
        bin_offsets: per level, the number of bins of the levels before it (the level's block
            starts at ``C * bin_offsets[l]`` in the output vector).
        total_bins: ``sum(n * n)`` (50 for levels (1, 2, 3, 6)).
        order: level indices in the order to compute them (finest first), so a level's source
            is always ready before it.
        source: per level, ``-1`` when the level is pooled from the map, else the index of a
            finer level ``m`` with ``m % n == 0`` whose bins it is derived from.
    """

    levels: tuple[int, ...]
    bin_offsets: tuple[int, ...]
    total_bins: int
    order: tuple[int, ...]
    source: tuple[int, ...]


def pyramid_layout(levels: Sequence[int]) -> PyramidLayout:
    """Build the :class:`PyramidLayout` of ``levels`` (validated)."""
    values = validate_levels(levels)
    offsets = [0]
    for n in values[:-1]:
        offsets.append(offsets[-1] + n * n)
    order = sorted(range(len(values)), key=lambda index: (-values[index], index))
    source = []
    for n in values:
        # The smallest finer multiple needs the fewest finer bins per coarse bin.
        candidates = [(m, k) for k, m in enumerate(values) if m > n and m % n == 0]
        source.append(min(candidates)[1] if candidates else -1)
    # Equal levels repeated: compute the first occurrence, copy the others from it.
    first: dict[int, int] = {}
    for index in order:
        n = values[index]
        if source[index] == -1 and n in first:
            source[index] = first[n]
        first.setdefault(n, index)
    assert all(s == -1 or values[s] % values[i] == 0 for i, s in enumerate(source))
    return PyramidLayout(
        levels=values,
        bin_offsets=tuple(offsets),
        total_bins=sum(n * n for n in values),
        order=tuple(order),
        source=tuple(source),
    )
