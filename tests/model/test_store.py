"""Model store: round trip, and one test per way loading can fail."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from app.model.net import SppNet
from app.model.store import ModelLoadError, load_model, save_model

CLASSES = ["circle", "square", "triangle"]


@pytest.fixture
def store(tmp_path: Path, tiny_model) -> Path:
    save_model(
        tiny_model.net, tmp_path / "tiny", name="tiny", version="1", classes=tiny_model.classes
    )
    return tmp_path


def _rewrite_weights(store: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Replace the weights and keep the manifest checksum consistent (isolates one fault)."""
    import hashlib

    from safetensors.torch import save

    blob = save(tensors)
    (store / "tiny" / "weights.safetensors").write_bytes(blob)
    manifest = json.loads((store / "tiny" / "manifest.json").read_text())
    manifest["weights_sha256"] = hashlib.sha256(blob).hexdigest()
    (store / "tiny" / "manifest.json").write_text(json.dumps(manifest))


def test_round_trip_gives_identical_outputs(store: Path, tiny_model) -> None:
    loaded = load_model(store, "tiny")
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        loaded.net.classify_logits(x), tiny_model.net.classify_logits(x), rtol=0, atol=0
    )
    assert loaded.classes == tiny_model.classes
    assert loaded.manifest.weights_dtype == "float16"


def test_missing_model_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such model directory"):
        load_model(tmp_path, "absent")


@pytest.mark.parametrize("name", ["../etc", "a/b", "..", ".hidden", "a\\b", ""])
def test_model_name_with_path_separators_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ModelLoadError, match="invalid model name"):
        load_model(tmp_path, name)


def test_manifest_not_json(store: Path) -> None:
    (store / "tiny" / "manifest.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match=r"manifest\.json: not a readable JSON manifest"):
        load_model(store, "tiny")


def test_manifest_unknown_key(store: Path) -> None:
    path = store / "tiny" / "manifest.json"
    raw = json.loads(path.read_text())
    raw["model"]["surprise"] = 1
    path.write_text(json.dumps(raw))
    with pytest.raises(ModelLoadError, match=r"model\.surprise"):
        load_model(store, "tiny")


@pytest.mark.parametrize("scales", [[], [224, 8]])
def test_manifest_bad_view_scales(store: Path, scales: list[int]) -> None:
    path = store / "tiny" / "manifest.json"
    raw = json.loads(path.read_text())
    raw["preprocess"]["view_scales"] = scales
    path.write_text(json.dumps(raw))
    with pytest.raises(ModelLoadError, match=r"preprocess\.view_scales"):
        load_model(store, "tiny")


def test_manifest_classes_disagree_with_config(store: Path) -> None:
    path = store / "tiny" / "manifest.json"
    raw = json.loads(path.read_text())
    raw["classes"] = raw["classes"][:-1]
    path.write_text(json.dumps(raw))
    with pytest.raises(ModelLoadError, match="num_classes"):
        load_model(store, "tiny")


def test_missing_tensor(store: Path) -> None:
    tensors = load_file(str(store / "tiny" / "weights.safetensors"))
    del tensors["svm.weight"]
    _rewrite_weights(store, tensors)
    with pytest.raises(
        ModelLoadError, match=r"weights\.safetensors: missing tensor\(s\) svm\.weight"
    ):
        load_model(store, "tiny")


def test_unexpected_tensor(store: Path) -> None:
    tensors = load_file(str(store / "tiny" / "weights.safetensors"))
    tensors["extra.weight"] = torch.zeros(2, dtype=torch.float16)
    _rewrite_weights(store, tensors)
    with pytest.raises(ModelLoadError, match=r"unexpected tensor\(s\) extra\.weight"):
        load_model(store, "tiny")


def test_wrong_shape(store: Path) -> None:
    tensors = load_file(str(store / "tiny" / "weights.safetensors"))
    tensors["cls_fc8.bias"] = torch.zeros(7, dtype=torch.float16)
    _rewrite_weights(store, tensors)
    with pytest.raises(ModelLoadError, match=r"cls_fc8\.bias has shape \(7,\), expected \(3,\)"):
        load_model(store, "tiny")


def test_wrong_dtype(store: Path) -> None:
    tensors = load_file(str(store / "tiny" / "weights.safetensors"))
    tensors["svm.bias"] = tensors["svm.bias"].float()
    _rewrite_weights(store, tensors)
    with pytest.raises(
        ModelLoadError, match=r"svm\.bias has dtype torch\.float32, expected torch\.float16"
    ):
        load_model(store, "tiny")


def test_truncated_weights(store: Path) -> None:
    path = store / "tiny" / "weights.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ModelLoadError, match="not a valid safetensors file"):
        load_model(store, "tiny")


def test_tampered_weights_fail_the_checksum(store: Path) -> None:
    path = store / "tiny" / "weights.safetensors"
    tensors = load_file(str(path))
    tensors["svm.bias"] = tensors["svm.bias"] + 1
    save_file(tensors, str(path))
    with pytest.raises(ModelLoadError, match=r"SHA-256 .* does not match"):
        load_model(store, "tiny")


def test_pickle_in_place_of_safetensors_is_refused(store: Path) -> None:
    class Boom:
        def __reduce__(self):  # would run on unpickling
            return (Path("/tmp/spp-pickle-ran").write_text, ("ran",))

    (store / "tiny" / "weights.safetensors").write_bytes(
        pickle.dumps({"w": Boom(), "x": np.zeros(3)})
    )
    with pytest.raises(ModelLoadError, match="not a valid safetensors file"):
        load_model(store, "tiny")
    assert not Path("/tmp/spp-pickle-ran").exists()


def test_missing_weights_file(store: Path) -> None:
    (store / "tiny" / "weights.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="cannot read weights"):
        load_model(store, "tiny")


def test_saved_net_is_the_configured_architecture(store: Path) -> None:
    loaded = load_model(store, "tiny")
    assert isinstance(loaded.net, SppNet)
    assert loaded.net.config == loaded.manifest.model


def test_background_output_round_trips(tmp_path: Path) -> None:
    """A model whose classification fc8 has a background output (K + 1) saves and loads as
    that architecture; a manifest that drops the flag no longer matches the weights."""
    from app.model.store import build_random_model

    model = build_random_model(CLASSES, cls_background=True)
    assert model.net.cls_fc8.out_features == len(CLASSES) + 1
    save_model(model.net, tmp_path / "bg", name="bg", version="1", classes=CLASSES)
    loaded = load_model(tmp_path, "bg")
    assert loaded.manifest.model.cls_background
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        loaded.net.classify_logits(x), model.net.classify_logits(x), rtol=0, atol=0
    )
    manifest = json.loads((tmp_path / "bg" / "manifest.json").read_text())
    manifest["model"]["cls_background"] = False
    (tmp_path / "bg" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="cls_fc8"):
        load_model(tmp_path, "bg")


def test_a_detector_without_classifier_round_trips_without_its_tensors(tmp_path: Path) -> None:
    from app.model.config import ModelConfig

    config = ModelConfig(
        num_classes=2,
        channels=(4, 4, 4, 4, 4),
        fc_dim=16,
        fc7_dim=12,
        classifier=False,
        conv_pads=(1, 0, 1, 1, 1),
        pool_pad=0,
        pool_ceil_mode=True,
    )
    net = SppNet(config).eval()
    assert not any(key.startswith(("cls_head", "cls_fc8")) for key in net.state_dict())
    assert net.svm.weight.shape == (2, 12) and net.det_fc8.in_features == 12
    save_model(net, tmp_path / "det", name="det", version="1", classes=["a", "b"], dtype="float32")
    loaded = load_model(tmp_path, "det")
    x = torch.randn(3, 200, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(loaded.net.det_head(x), net.det_head(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="no whole-image classification head"):
        loaded.net.classify_logits(torch.zeros(1, 3, 64, 64))
