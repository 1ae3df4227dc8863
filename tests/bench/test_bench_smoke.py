"""The bench/ scripts: the section writer (fast) and a --quick smoke run of each (slow).

The smoke runs check that each script runs end to end on tiny inputs and writes its own
section; they assert nothing about timings.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = [
    "bench_features",
    "bench_detect",
    "bench_proposals",
    "bench_selective_search",
    "bench_end_to_end",
    "bench_compress",
    "bench_service",
]


def _common() -> ModuleType:
    if "bench_common" in sys.modules:
        return sys.modules["bench_common"]
    spec = importlib.util.spec_from_file_location("bench_common", REPO_ROOT / "bench/common.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_write_section_replaces_only_its_own_block(tmp_path: Path) -> None:
    common = _common()
    path = tmp_path / "BENCHMARKS.md"
    common.write_section("bench_a", "first A\n", path)  # creates the file with a title
    assert path.read_text().startswith(common.BENCHMARKS_TITLE)
    other = "<!-- bench_roi_spp:start -->\nkeep me | exactly\n<!-- bench_roi_spp:end -->\n"
    path.write_text(path.read_text() + "\n" + other)
    common.write_section("bench_b", "B\n", path)
    common.write_section("bench_a", "second A\nwith $1 and \\1 kept literally\n", path)
    text = path.read_text()
    assert "first A" not in text
    assert "second A\nwith $1 and \\1 kept literally\n" in text
    assert other in text
    assert text.count("<!-- bench_a:start -->") == 1 and text.count("<!-- bench_b:end -->") == 1
    assert text.index("bench_a:start") < text.index("bench_roi_spp:start") < text.index("bench_b")


def test_markdown_table() -> None:
    table = _common().markdown_table(["name", "ms"], [["a", 1.5], ["b", 20]])
    assert table == "| name | ms |\n|:---|---:|\n| a | 1.5 |\n| b | 20 |\n"
    with pytest.raises(ValueError, match="expected rows of 2 cells"):
        _common().markdown_table(["name", "ms"], [["a"]])


def test_size_options_take_the_quick_or_the_full_default() -> None:
    common = _common()
    sizes = (
        common.SizeOption("--images", full=30, quick=3, what="images"),
        common.SizeOption("--map-images", full=40, quick=0, what="mAP images", zero_skips=True),
        common.SizeOption("--duration", full=20.0, quick=3.0, what="seconds"),
    )

    def parsed(*argv: str) -> tuple[object, ...]:
        args = common.parse_options("A benchmark.", list(argv), *sizes)
        return args.images, args.map_images, args.duration, args.quick

    assert parsed() == (30, 40, 20.0, False)
    assert parsed("--quick") == (3, 0, 3.0, True)
    # 0 means the default, except for an option where 0 skips a part of the run
    assert parsed("--images", "0", "--map-images", "0", "--duration", "0") == (30, 0, 20.0, False)
    given = parsed("--quick", "--images", "7", "--map-images", "5", "--duration", "1.5")
    assert given == (7, 5, 1.5, True)
    assert type(given[0]) is int and type(given[2]) is float


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_quick_run_writes_its_section(script: str, tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{script}", "--quick", "--write", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    assert f"<!-- {script}:start -->" in text and f"<!-- {script}:end -->" in text
    assert "Command: `" in text and "Machine:" in text
    assert "|---" in text or "Skipped" in text
