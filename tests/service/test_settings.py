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
