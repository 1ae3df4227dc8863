"""Stage 3's choice of windows: which IoU ranges feed fine-tuning, and how many of each."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.training.recipe import FinetuneConfig
from app.training.stages.finetune import pick_windows


def _ranges(max_iou: torch.Tensor) -> dict[str, list[int]]:
    """The three groups written out window by window."""
    groups: dict[str, list[int]] = {"fg": [], "bg": [], "far": []}
    for i, iou in enumerate(max_iou.tolist()):
        if iou >= 0.5:
            groups["fg"].append(i)
        elif iou >= 0.1:
            groups["bg"].append(i)
        else:
            groups["far"].append(i)
    return groups


@pytest.fixture
def max_iou() -> torch.Tensor:
    rng = np.random.default_rng(3)
    # Edges included: 0.5 is foreground, 0.1 is background, 0.0999 is far background.
    edges = [0.5, 0.1, 0.0999, 0.0, 1.0, 0.4999]
    return torch.tensor([*edges, *rng.uniform(0, 1, 300).tolist()], dtype=torch.float32)


@pytest.mark.parametrize(("fg", "bg", "far"), [(8, 16, 0), (8, 16, 5), (1000, 1000, 1000)])
def test_pick_windows_draws_each_range_up_to_its_count(
    max_iou: torch.Tensor, fg: int, bg: int, far: int
) -> None:
    config = FinetuneConfig(fg_per_image=fg, bg_per_image=bg, far_bg_per_image=far)
    picked = pick_windows(max_iou, config, np.random.default_rng(0))
    groups = _ranges(max_iou)
    assert len(set(picked.tolist())) == len(picked), "drawn without replacement"
    for name, wanted in (("fg", fg), ("bg", bg), ("far", far)):
        mine = [i for i in picked.tolist() if i in set(groups[name])]
        assert len(mine) == min(wanted, len(groups[name])), name
    assert len(picked) == min(fg, len(groups["fg"])) + min(bg, len(groups["bg"])) + min(
        far, len(groups["far"])
    )


def test_the_papers_setting_never_picks_windows_below_iou_0_1(max_iou: torch.Tensor) -> None:
    picked = pick_windows(
        max_iou, FinetuneConfig(fg_per_image=10**4, bg_per_image=10**4), np.random.default_rng(1)
    )
    assert float(max_iou[picked].min()) >= 0.1
    assert sorted(picked.tolist()) == sorted(_ranges(max_iou)["fg"] + _ranges(max_iou)["bg"])


def test_pick_windows_is_reproducible_from_the_generator(max_iou: torch.Tensor) -> None:
    config = FinetuneConfig(fg_per_image=4, bg_per_image=4, far_bg_per_image=4)
    first = pick_windows(max_iou, config, np.random.default_rng(7))
    again = pick_windows(max_iou, config, np.random.default_rng(7))
    other = pick_windows(max_iou, config, np.random.default_rng(8))
    assert first.tolist() == again.tolist() != other.tolist()
