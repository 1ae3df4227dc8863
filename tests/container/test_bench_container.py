"""``bench/bench_container.py --quick`` runs against the test image and writes its section."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from docker_helpers import ROOT

pytestmark = [pytest.mark.container, pytest.mark.timeout(1800)]


def test_quick_run_writes_its_section(service_image: str, tmp_path: Path) -> None:
    report = tmp_path / "BENCHMARKS.md"
    env = {**os.environ, "SPP_BENCH_IMAGE": service_image, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "bench.bench_container", "--quick", "--write", str(report)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    text = report.read_text()
    assert "<!-- bench_container:start -->" in text and "--quick smoke run" in text
    assert f"Image `{service_image}`" in text and "| astronaut |" in text
