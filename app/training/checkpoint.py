"""Resumable training checkpoints: tensors in safetensors, the rest in JSON.

A checkpoint is ``<stem>.safetensors`` (model parameters and optimizer state tensors) plus
``<stem>.json`` (optimizer hyper-parameters and the caller's progress, e.g. the epoch). The
tensors include torch's CPU random state (``rng.torch``: dropout masks), so a resumed run draws
what an uninterrupted one would; a checkpoint without it resumes with the generator as it
stands. Writes go to temporary files first, so a cut-off run never
leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn


def save_checkpoint(
    stem: Path, module: nn.Module, optimizer: torch.optim.Optimizer, progress: dict[str, Any]
) -> None:
    """Write ``module``'s state, ``optimizer``'s state and ``progress`` under ``stem``."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    opt_state = optimizer.state_dict()
    for param_id, state in opt_state["state"].items():
        for key, value in state.items():
            tensors[f"optim.{param_id}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {"param_groups": opt_state["param_groups"], "progress": progress}
    stem.parent.mkdir(parents=True, exist_ok=True)
    tmp_tensors = stem.with_suffix(".safetensors.tmp")
    tmp_meta = stem.with_suffix(".json.tmp")
    save_file(tensors, str(tmp_tensors))
    tmp_meta.write_text(json.dumps(meta, indent=1))
    tmp_tensors.replace(stem.with_suffix(".safetensors"))
    tmp_meta.replace(stem.with_suffix(".json"))


def load_checkpoint(
    stem: Path, module: nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any] | None:
    """Restore a checkpoint written by :func:`save_checkpoint`; ``None`` when there is none."""
    tensors_path, meta_path = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    if not (tensors_path.is_file() and meta_path.is_file()):
        return None
    tensors = load_file(str(tensors_path))
    meta = json.loads(meta_path.read_text())
    module.load_state_dict(
        {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    )
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, param_id, name = key.split(".", 2)
            state.setdefault(int(param_id), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    progress: dict[str, Any] = meta["progress"]
    return progress
