"""Model artifacts: ``model_store/<name>/manifest.json`` + ``weights.safetensors``.

Loading validates everything before a single tensor reaches the network and fails with a
:class:`ModelLoadError` naming the file and the key or tensor at fault. Weights are only ever
read with safetensors (never a code-executing format); the manifest records their SHA-256,
so a tampered or truncated file is refused.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from app.model.config import (
    DetectionConfig,
    ModelConfig,
    PreprocessConfig,
    ProposalConfig,
    WindowConfig,
)
from app.model.net import SppNet

MANIFEST_FILE = "manifest.json"
WEIGHTS_FILE = "weights.safetensors"
#: Names a model directory may have: no path separators, no leading dot.
MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
}
WeightsDtype = Literal["float16", "bfloat16", "float32"]


class ModelLoadError(Exception):
    """A model could not be loaded; the message names the file and the key or tensor."""


class Manifest(BaseModel):
    """The contents of ``manifest.json``. Unknown keys are rejected at every level."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: Literal[1] = 1
    name: str
    version: str
    description: str = ""
    classes: list[str]
    model: ModelConfig
    preprocess: PreprocessConfig = PreprocessConfig()
    detection: DetectionConfig = DetectionConfig()
    windows: WindowConfig = WindowConfig()
    """Scale choice, box scaling and projection of windows (docs/model.md §§3-4 unless imported)."""
    proposals: ProposalConfig = ProposalConfig()
    weights_file: str = WEIGHTS_FILE
    weights_dtype: WeightsDtype = "float16"
    weights_sha256: str
    training: dict[str, Any] = {}
    """Provenance: command, seeds, data hash, stage settings (free-form, written by training)."""
    metrics: dict[str, Any] = {}
    """Measured metrics (free-form, written by evaluation)."""

    @field_validator("name")
    @classmethod
    def _name_is_safe(cls, name: str) -> str:
        if not MODEL_NAME_PATTERN.fullmatch(name):
            raise ValueError(f"model name {name!r} must match {MODEL_NAME_PATTERN.pattern}")
        return name

    @field_validator("weights_file")
    @classmethod
    def _plain_file_name(cls, weights_file: str) -> str:
        if Path(weights_file).name != weights_file or not weights_file.endswith(".safetensors"):
            raise ValueError(
                f"weights_file must be a plain *.safetensors name, got {weights_file!r}"
            )
        return weights_file

    @model_validator(mode="after")
    def _classes_match_config(self) -> Manifest:
        if len(self.classes) != self.model.num_classes:
            raise ValueError(
                f"{len(self.classes)} classes listed but "
                f"model.num_classes is {self.model.num_classes}"
            )
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"class names must be unique, got {self.classes}")
        return self

    def summary(self) -> dict[str, Any]:
        """What ``GET /v1/models`` and ``spp models`` show: everything but the provenance."""
        return self.model_dump(mode="json", exclude={"training"})


@dataclass
class SppModel:
    """A loaded model: its manifest and the network (in eval mode, on one device)."""

    manifest: Manifest
    net: SppNet

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def classes(self) -> list[str]:
        return list(self.manifest.classes)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device


def validate_model_name(name: str) -> str:
    """Return ``name`` if it is a safe directory name, else raise :class:`ModelLoadError`."""
    if not MODEL_NAME_PATTERN.fullmatch(name):
        raise ModelLoadError(
            f"invalid model name {name!r}: expected letters, digits, '.', '_' or '-' "
            "and no path separators"
        )
    return name


def read_manifest(model_dir: Path) -> Manifest:
    """Parse and validate ``model_dir/manifest.json``."""
    path = model_dir / MANIFEST_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path}: not a readable JSON manifest ({exc})") from None
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ModelLoadError(f"{path}: invalid manifest: {problems}") from None


def _check_tensors(
    path: Path, tensors: dict[str, torch.Tensor], net: SppNet, dtype: torch.dtype
) -> None:
    expected = net.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing:
        raise ModelLoadError(f"{path}: missing tensor(s) {', '.join(missing)}")
    if unexpected:
        raise ModelLoadError(f"{path}: unexpected tensor(s) {', '.join(unexpected)}")
    for key, want in expected.items():
        got = tensors[key]
        if tuple(got.shape) != tuple(want.shape):
            raise ModelLoadError(
                f"{path}: tensor {key} has shape {tuple(got.shape)}, expected {tuple(want.shape)}"
            )
        if got.dtype != dtype:
            raise ModelLoadError(f"{path}: tensor {key} has dtype {got.dtype}, expected {dtype}")


def load_model(store_dir: Path | str, name: str, device: torch.device | str = "cpu") -> SppModel:
    """Load ``store_dir/name`` after validating its manifest and every tensor.

    Raises:
        ModelLoadError: with the file and the key or tensor at fault.
    """
    model_dir = Path(store_dir) / validate_model_name(name)
    if not model_dir.is_dir():
        raise ModelLoadError(f"{model_dir}: no such model directory")
    manifest = read_manifest(model_dir)
    if manifest.name != name:
        raise ModelLoadError(
            f"{model_dir / MANIFEST_FILE}: the manifest names the model {manifest.name!r}, but "
            f"its folder is {name!r}; a model is known by its folder name: rename the folder "
            f"to {manifest.name!r} or set the manifest's name to {name!r}"
        )
    path = model_dir / manifest.weights_file
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot read weights ({exc.strerror or exc})") from None
    try:
        tensors = load_safetensors(blob)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(
            f"{path}: not a valid safetensors file (truncated, or another format altogether): {exc}"
        ) from None
    net = SppNet(manifest.model)
    _check_tensors(path, tensors, net, _DTYPES[manifest.weights_dtype])
    digest = hashlib.sha256(blob).hexdigest()
    if digest != manifest.weights_sha256:
        raise ModelLoadError(
            f"{path}: SHA-256 {digest} does not match the manifest's {manifest.weights_sha256}"
        )
    net.load_state_dict({k: v.float() for k, v in tensors.items()})
    net.eval().requires_grad_(False)
    return SppModel(manifest=manifest, net=net.to(device))


def save_model(
    net: SppNet,
    out_dir: Path | str,
    *,
    name: str,
    version: str,
    classes: Sequence[str],
    dtype: WeightsDtype = "float16",
    **manifest_fields: Any,
) -> Manifest:
    """Write ``out_dir/manifest.json`` and ``out_dir/weights.safetensors``.

    ``manifest_fields`` are the remaining :class:`Manifest` fields (preprocess, detection,
    windows, proposals, description, training, metrics).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {
        k: v.detach().to("cpu", _DTYPES[dtype]).contiguous() for k, v in net.state_dict().items()
    }
    blob = save_safetensors(tensors, metadata={"format": "pt", "name": name, "version": version})
    manifest = Manifest(
        name=name,
        version=version,
        classes=list(classes),
        model=net.config,
        weights_dtype=dtype,
        weights_sha256=hashlib.sha256(blob).hexdigest(),
        **manifest_fields,
    )
    (out / WEIGHTS_FILE).write_bytes(blob)
    (out / MANIFEST_FILE).write_text(
        json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8"
    )
    return manifest


def list_models(store_dir: Path | str) -> list[Manifest]:
    """Manifests of every valid model under ``store_dir`` (invalid ones are skipped)."""
    return [read_manifest(Path(store_dir) / name) for name in list_model_names(store_dir)]


def list_model_names(store_dir: Path | str) -> list[str]:
    """Folder names (what :func:`load_model` takes) of the models under ``store_dir`` whose
    manifest is valid and names the model as its folder, in name order."""
    names = []
    for child in sorted(Path(store_dir).iterdir()) if Path(store_dir).is_dir() else []:
        if (child / MANIFEST_FILE).is_file():
            try:
                if read_manifest(child).name == child.name:
                    names.append(child.name)
            except ModelLoadError:
                continue
    return names


def build_random_model(
    classes: Sequence[str],
    *,
    width: float = 0.125,
    fc_dim: int = 64,
    seed: int = 0,
    name: str = "tiny-random",
    detection: DetectionConfig | None = None,
    proposals: ProposalConfig | None = None,
    cls_background: bool = False,
) -> SppModel:
    """A tiny random-weight model for tests: every head is filled, so it produces detections.

    Weights come from a private generator seeded with ``seed``; the global RNG is untouched.
    """
    config = ModelConfig(
        num_classes=len(classes), width=width, fc_dim=fc_dim, cls_background=cls_background
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = SppNet(config)
        k = len(classes)
        net.svm.weight.copy_(torch.randn(k, fc_dim) / fc_dim**0.5)
        net.svm.bias.copy_(torch.randn(k) * 0.1)
        net.bbox.weight.copy_(torch.randn(k * 4, config.spp_dim) * 1e-4)
        net.svm.feature_scale.fill_(1.0)
    state = {k: v.half().float() for k, v in net.state_dict().items()}  # as if stored in fp16
    net.load_state_dict(state)
    manifest = Manifest(
        name=name,
        version="0",
        classes=list(classes),
        model=config,
        detection=detection or DetectionConfig(),
        proposals=proposals or ProposalConfig(),
        weights_sha256=hashlib.sha256(b"").hexdigest(),
        description="random weights, for tests only",
    )
    net.eval().requires_grad_(False)
    return SppModel(manifest=manifest, net=net)


#: The model used when none is named (the embedded default, trained by ``spp train all``).
DEFAULT_MODEL_NAME = "zf5-shapes"
