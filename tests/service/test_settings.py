"""Settings read from the environment: ``MODEL_STORE`` reaches the service (see also
tests/cli/test_commands.py for the CLI, which reads the same setting)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.model.store import save_model
from app.service.settings import Settings, StoreSettings, default_model_store

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_model_store_defaults_to_the_repositorys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODEL_STORE", raising=False)
    assert default_model_store() == REPO_ROOT / "model_store"
    assert Settings(_env_file=None).model_store == REPO_ROOT / "model_store"  # type: ignore[call-arg]


def test_model_store_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MODEL_STORE", str(tmp_path))
    assert Settings(_env_file=None).model_store == tmp_path  # type: ignore[call-arg]
    assert StoreSettings(_env_file=None).model_store == tmp_path  # type: ignore[call-arg]


def test_the_app_serves_the_model_found_under_model_store(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_model: Any, service: Any
) -> None:
    """``create_app()`` with no arguments, as ``app.main`` builds it: everything from the
    environment."""
    from app.service.factory import create_app

    save_model(
        tiny_model.net,
        tmp_path / "from-env",
        name="from-env",
        version="3",
        classes=tiny_model.classes,
        detection=tiny_model.manifest.detection,
        proposals=tiny_model.manifest.proposals,
    )
    for name, value in {
        "MODEL_STORE": str(tmp_path),
        "MODEL_NAME": "from-env",
        "DEVICE": "cpu",
        "PROPOSAL_WORKERS": "1",
        "GRPC_PORT": "0",
    }.items():
        monkeypatch.setenv(name, value)
    with TestClient(create_app()) as client:
        service.wait_ready(client)
        [model] = client.get("/v1/models").json()["models"]
    assert (model["name"], model["version"]) == ("from-env", "3")


def test_model_repository_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LOAD_MODELS", "MODEL_CONTROL", "GRPC_HOST"):
        monkeypatch.delenv(name, raising=False)
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (defaults.load_models, defaults.model_control) == ([], "none")
    assert defaults.grpc_host == "127.0.0.1", "gRPC listens on loopback unless asked"
    monkeypatch.setenv("LOAD_MODELS", " a, b ,,c")
    monkeypatch.setenv("MODEL_CONTROL", "EXPLICIT")
    monkeypatch.setenv("GRPC_HOST", "0.0.0.0")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.load_models == ["a", "b", "c"] and settings.model_control == "explicit"
    assert settings.grpc_host == "0.0.0.0"
    monkeypatch.setenv("MODEL_CONTROL", "poll")
    with pytest.raises(ValueError, match="model_control"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_load_models_star_is_every_model_of_the_store(tmp_path: Path, tiny_model: Any) -> None:
    from app.service.metrics import ServiceMetrics
    from app.service.registry import ModelRegistry

    for name in ("zeta", "alpha"):
        save_model(tiny_model.net, tmp_path / name, name=name, version="1",
                   classes=tiny_model.classes)  # fmt: skip
    (tmp_path / "not-a-model").mkdir()
    settings = Settings(_env_file=None, model_store=tmp_path, model_name="zeta", load_models="*")  # type: ignore[call-arg]
    assert ModelRegistry(settings, ServiceMetrics()).startup_names() == ["zeta", "alpha"]
    only = Settings(_env_file=None, model_store=tmp_path, model_name="zeta")  # type: ignore[call-arg]
    assert ModelRegistry(only, ServiceMetrics()).startup_names() == ["zeta"]


def test_the_service_version_is_the_installed_packages() -> None:
    import importlib.metadata

    from app.service.factory import create_app, service_version

    assert service_version() == importlib.metadata.version("spp-service")
    assert create_app(Settings(_env_file=None, grpc_port=0)).version == service_version()  # type: ignore[call-arg]
