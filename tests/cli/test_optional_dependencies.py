"""Without the ``train`` and ``import`` extras (the server image), ``spp --help``, ``spp models``
and ``spp detect`` work, and a command that needs an extra says which one in one line.

Each check runs ``spp`` in a fresh interpreter whose import system refuses the extras'
modules (``None`` in ``sys.modules``), as if they were not installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.cli import OPTIONAL_MODULES

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Runs ``spp`` with every module of ``OPTIONAL_MODULES`` unimportable.
WITHOUT_EXTRAS = """
import sys

for name in {blocked!r}:
    sys.modules[name] = None  # `import name` now fails as if it were not installed
from app.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


def _spp(*argv: str) -> subprocess.CompletedProcess[str]:
    script = WITHOUT_EXTRAS.format(blocked=sorted(OPTIONAL_MODULES))
    return subprocess.run(
        [sys.executable, "-c", script, *argv],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )


def test_the_blocker_blocks() -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRAS.format(blocked=["sklearn"]).replace(
            "from app.cli import main", "import sklearn.svm"
        )],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0 and "No module named 'sklearn" in done.stderr


def test_help_models_and_detect_need_no_extra(tmp_path: Path) -> None:
    assert _spp("--help").returncode == 0
    for command in ("detect", "classify", "train", "eval", "import", "data", "recipe"):
        assert command in _spp("--help").stdout
    listed = _spp("models")
    assert listed.returncode == 0 and "zf5-shapes" in listed.stdout, listed.stderr
    image = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "x.png")
    detected = _spp("detect", str(tmp_path / "x.png"), "--device", "cpu")
    assert detected.returncode == 0, detected.stderr
    assert detected.stdout.startswith(f"{tmp_path / 'x.png'}: ")


@pytest.mark.parametrize(
    ("argv", "extra"),
    [
        (["train", "all", "--config", "app/training/configs/zf5-tiny.yaml", "--work", "{tmp}"],
         "train"),
        (["data", "shapes", "--out", "{tmp}/d", "--seed", "1", "--test", "1"], "train"),
        (["eval", "--voc-root", "{tmp}", "--detections", "{tmp}/d.json"], "train"),
        (["import", "spp-net-release", "--model-mat", "{tmp}/m.mat", "--name", "x",
          "--store", "{tmp}"], "import"),
    ],
)  # fmt: skip
def test_a_command_needing_an_extra_names_it_in_one_line(
    tmp_path: Path, argv: list[str], extra: str
) -> None:
    done = _spp(*(a.format(tmp=tmp_path) for a in argv))
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"spp: `spp {argv[0]}` needs ")
    assert line.endswith(f"pip install 'spp-service[{extra}]'")
