"""The request path is written once and knows no HTTP route: ``requests.py``, the stages and
the protocol's bridge import neither the own routes nor their HTTP schemas."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICE = Path(__file__).resolve().parents[2] / "app" / "service"
REQUEST_PATH = [
    "requests.py",
    "stages.py",
    "registry.py",
    "model_serving.py",
    "proposing.py",
    "batching.py",
    "oip/service_models.py",
    "oip/spp_backend.py",
]
FORBIDDEN = ("app.service.api_models", "app.service.routes", "app.service.uploads", "fastapi")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", REQUEST_PATH)
def test_the_request_path_imports_no_http_route_or_schema(module: str) -> None:
    bad = sorted(
        name
        for name in imported_modules(SERVICE / module)
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)
    )
    assert bad == [], f"{module} imports {bad}"


def test_the_check_sees_an_import(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("from app.service.api_models import DetectParams\nimport fastapi\n")
    assert imported_modules(sample) == {"app.service.api_models", "fastapi"}


def test_every_protocol_calls_the_one_sequence() -> None:
    """/detect, /classify and the protocol bridge all run ``requests.admit`` and the shared
    ``requests.detect`` / ``requests.classify``; none decodes or proposes on its own."""
    for module in ("routes/detect.py", "routes/classify.py", "oip/service_models.py"):
        text = (SERVICE / module).read_text(encoding="utf-8")
        assert "requests." in text, module
        for private_step in ("decode_image(", ".propose(", ".worker."):
            assert private_step not in text, f"{module} runs {private_step} itself"
