from __future__ import annotations

import pytest

from app.model.store import SppModel, build_random_model


@pytest.fixture
def tiny_model() -> SppModel:
    return build_random_model(["circle", "square", "triangle"], width=0.125, fc_dim=32, seed=0)
