"""Checkpoints: a save/load round trip restores the model, the optimizer, torch's random
state and the caller's progress, so a resumed run continues exactly as an uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from app.training.checkpoint import load_checkpoint, save_checkpoint


def _model() -> nn.Module:
    """Small, with dropout, so the random state matters."""
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3))


def _optimizer(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-3)


def _steps(model: nn.Module, optimizer: torch.optim.Optimizer, n: int) -> None:
    """``n`` training steps on fixed data; only dropout draws from torch's generator."""
    x = torch.linspace(-1, 1, 4 * 6).view(4, 6)
    y = torch.tensor([0, 1, 2, 1])
    model.train()
    for _ in range(n):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _model()
    optimizer = _optimizer(model)
    _steps(model, optimizer, 3)
    save_checkpoint(tmp_path / "ckpt", model, optimizer, {"epoch": 3, "history": [0.5]})
    _steps(model, optimizer, 2)  # the uninterrupted run

    torch.manual_seed(123)  # another process: other weights, another random state
    resumed_model = _model()
    resumed_optimizer = _optimizer(resumed_model)
    progress = load_checkpoint(tmp_path / "ckpt", resumed_model, resumed_optimizer)
    assert progress == {"epoch": 3, "history": [0.5]}
    _steps(resumed_model, resumed_optimizer, 2)
    for (name, a), b in zip(
        model.state_dict().items(), resumed_model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


def test_the_round_trip_restores_each_part(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _model()
    optimizer = _optimizer(model)
    _steps(model, optimizer, 2)
    for group in optimizer.param_groups:
        group["lr"] = 3e-4  # a schedule moved it
    rng_state = torch.get_rng_state()
    save_checkpoint(tmp_path / "ckpt", model, optimizer, {"epoch": 7})
    expected_draw = torch.rand(5)

    torch.manual_seed(99)
    other = _model()
    other_optimizer = _optimizer(other)
    assert load_checkpoint(tmp_path / "ckpt", other, other_optimizer) == {"epoch": 7}
    assert torch.equal(torch.get_rng_state(), rng_state)
    assert torch.equal(torch.rand(5), expected_draw)
    for (name, a), b in zip(model.state_dict().items(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert [g["lr"] for g in other_optimizer.param_groups] == [3e-4]
    saved, loaded = optimizer.state_dict()["state"], other_optimizer.state_dict()["state"]
    assert saved.keys() == loaded.keys()
    for key in saved:
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(torch.as_tensor(saved[key][name]), loaded[key][name]), name


def test_no_checkpoint_is_none_and_a_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    model = _model()
    assert load_checkpoint(tmp_path / "none", model, _optimizer(model)) is None
    save_checkpoint(tmp_path / "deep" / "ckpt", model, _optimizer(model), {"epoch": 0})
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == [
        "ckpt.json",
        "ckpt.safetensors",
    ]
