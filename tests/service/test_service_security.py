"""Security properties: nothing unpickles, uploads stay in memory, errors leak nothing."""

from __future__ import annotations

import ast
import builtins
import tempfile
from pathlib import Path
from typing import Any

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "app"
FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "dill", "joblib", "shelve", "marshal"}
FORBIDDEN_CALLS = {
    "torch.load",
    "pickle.load",
    "pickle.loads",
    "pd.read_pickle",
    "pandas.read_pickle",
    "np.load",
    "numpy.load",
}


def dotted(node: ast.AST) -> str:
    """``a.b.c`` for an attribute chain, else ''."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        prefix = dotted(node.value)
        return f"{prefix}.{node.attr}" if prefix else ""
    return ""


def unsafe_deserialisation(path: Path) -> list[str]:
    """Imports of pickle-like modules, ``torch.load`` calls, and ``np.load`` calls that do
    not pass ``allow_pickle=False`` explicitly, in one source file."""
    problems = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [(node.module or "").split(".")[0]]
        else:
            names = []
        problems += [f"{path}:{node.lineno}: import {n}" for n in names if n in FORBIDDEN_MODULES]
        if isinstance(node, ast.Call) and dotted(node.func) in FORBIDDEN_CALLS:
            name = dotted(node.func)
            safe_np_load = (
                name.endswith(".load")
                and name.split(".")[0] in ("np", "numpy")
                and any(
                    kw.arg == "allow_pickle"
                    and isinstance(kw.value, ast.Constant)
                    and kw.value.value is False
                    for kw in node.keywords
                )
            )
            if not safe_np_load:
                problems.append(f"{path}:{node.lineno}: {name}(...)")
    return problems


def test_no_pickle_or_torch_load_in_the_package() -> None:
    problems = [p for path in sorted(PACKAGE.rglob("*.py")) for p in unsafe_deserialisation(path)]
    assert not problems, "\n".join(problems)


def test_the_scanner_finds_what_it_should(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import pickle\nimport torch\nimport numpy as np\n"
        "torch.load('x')\nnp.load('y')\nnp.load('z', allow_pickle=False)\n"
    )
    assert [p.split(": ", 1)[1] for p in unsafe_deserialisation(bad)] == [
        "import pickle",
        "torch.load(...)",
        "np.load(...)",
    ]


def test_uploads_never_touch_the_disk(
    client: Any, images: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 3 MB multipart upload (above Starlette's 1 MB spooling threshold) is served with
    every temporary-file API and every writing ``open`` made to fail."""
    big = images.encode(images.scene(1024, 768, seed=2), "BMP")
    assert len(big) > 2 * 1024 * 1024
    writes: list[str] = []
    real_open = builtins.open

    def guarded_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if any(flag in mode for flag in "wax+"):
            writes.append(f"{file!r} {mode}")
            raise PermissionError("no writes during this test")
        return real_open(file, mode, *args, **kwargs)

    def no_temp_files(*args: Any, **kwargs: Any) -> Any:
        writes.append("tempfile")
        raise PermissionError("no temporary files during this test")

    monkeypatch.setattr(builtins, "open", guarded_open)
    for name in ("SpooledTemporaryFile", "TemporaryFile", "NamedTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, no_temp_files)
    response = client.post(
        "/detect",
        files={"image": ("big.bmp", big, "image/bmp")},
        params={"max_proposals": 10},
    )
    monkeypatch.undo()
    assert response.status_code == 200, response.text
    assert writes == []


def test_error_answers_do_not_echo_internals(client: Any) -> None:
    response = client.post("/detect", content=b"\x00" * 64, headers={"Content-Type": "image/png"})
    assert response.status_code == 415
    assert "Traceback" not in response.text and "/work" not in response.text
