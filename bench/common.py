"""Shared pieces of the ``bench/`` scripts: machine description, markdown tables, the
``BENCHMARKS.md`` section writer, timing, test images and the models every benchmark uses.

Run the scripts from the repository root as modules (``python -m bench.bench_features``), so
``bench.common`` imports without touching ``sys.path``.

Each script owns one section of ``BENCHMARKS.md``, between ``<!-- NAME:start -->`` and
``<!-- NAME:end -->``; :func:`write_section` replaces only that block (other scripts' sections,
such as ``bench_roi_spp``, are left byte for byte as they are).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS_FILE = REPO_ROOT / "BENCHMARKS.md"
BENCHMARKS_TITLE = "# Benchmarks\n"
MODEL_STORE = REPO_ROOT / "model_store"
DEFAULT_MODEL = "zf5-shapes"
#: Seed of the generated benchmark images (the training data uses other seeds).
IMAGE_SEED = 123
BENCH_THREADS = 2


# ------------------------------------------------------------------------------ command line


def parser_for(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark has: ``--quick`` and ``--write``."""
    parser = argparse.ArgumentParser(
        description=(doc or "").strip().splitlines()[0] if doc else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: tiny inputs, a few seconds, not a result"
    )
    parser.add_argument(
        "--write",
        nargs="?",
        type=Path,
        const=BENCHMARKS_FILE,
        default=None,
        metavar="PATH",
        help=f"replace this script's section in PATH (default {BENCHMARKS_FILE.name})",
    )
    return parser


@dataclass(frozen=True)
class SizeOption:
    """A numeric option (``--images N``, ``--duration S``) whose default depends on ``--quick``.

    Unset, the option takes ``quick`` in a ``--quick`` run and ``full`` otherwise; so does an
    explicit 0, unless ``zero_skips`` (0 then skips the part of the run the option sizes).
    The type of ``full`` is the option's type.
    """

    flag: str
    full: int | float
    quick: int | float
    what: str
    zero_skips: bool = False

    @property
    def dest(self) -> str:
        """The attribute name argparse gives the option (``--map-images`` -> ``map_images``)."""
        return self.flag.lstrip("-").replace("-", "_")


def parse_options(
    doc: str | None, argv: Sequence[str] | None, *sizes: SizeOption
) -> argparse.Namespace:
    """``--quick``, ``--write`` and ``sizes`` parsed from ``argv``, each size resolved to its
    value for this run (see :class:`SizeOption`)."""
    parser = parser_for(doc)
    for size in sizes:
        parser.add_argument(
            size.flag,
            type=type(size.full),
            default=None,
            help=f"{size.what} (default {size.full:g}; quick {size.quick:g})",
        )
    args = parser.parse_args(argv)
    for size in sizes:
        value = getattr(args, size.dest)
        if value is None or (value == 0 and not size.zero_skips):
            setattr(args, size.dest, size.quick if args.quick else size.full)
    return args


def command_line(module: str, argv: Sequence[str] | None = None) -> str:
    """The exact command that reproduces this run, from the repository root."""
    args = list(sys.argv[1:] if argv is None else argv)
    return shlex.join([".venv/bin/python", "-m", module, *args])


def setup_threads(threads: int = BENCH_THREADS) -> None:
    """Fix the intra-op thread count (the machines this targets have 2 cores)."""
    torch.set_num_threads(threads)
    try:
        import cv2

        cv2.setNumThreads(threads)
    except ImportError:  # pragma: no cover - OpenCV is a dependency
        pass


# ---------------------------------------------------------------------------- the machine


def cpu_model() -> str:
    """The CPU model name from ``/proc/cpuinfo`` (or ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_description() -> list[str]:
    """Markdown bullet lines: CPU, cores, threads, versions, CUDA device, load average."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    import torchvision

    cuda = (
        f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
        if torch.cuda.is_available()
        else "none (CPU only)"
    )
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return [
        f"- CPU: {cpu_model()}, {cores} cores usable by this process, "
        f"torch threads: {torch.get_num_threads()}",
        f"- CUDA device: {cuda}",
        f"- Python {platform.python_version()}, torch {torch.__version__}, "
        f"torchvision {torchvision.__version__}, {platform.system()} {platform.release()}",
        f"- load average (1, 5, 15 min) at the start: {load} (a shared machine: another job, "
        "e.g. a training run, may be using the same cores; the ratios are measured side by "
        "side in one run and so stay meaningful, absolute times do not)",
    ]


# ----------------------------------------------------------------------------- markdown


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str = "") -> str:
    """A GitHub markdown table; ``align`` has one of ``l``/``r`` per column (default: the first
    column left, the others right)."""
    if not align:
        align = "l" + "r" * (len(headers) - 1)
    if len(align) != len(headers):
        raise ValueError(f"expected {len(headers)} alignment letters, got {align!r}")
    rule = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(rule) + "|"]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"expected rows of {len(headers)} cells, got {len(row)}: {row!r}")
        lines.append("| " + " | ".join(str(cell) for cell in row) + " |")
    return "\n".join(lines) + "\n"


def render_section(lines: Sequence[str], machine: Sequence[str], *, quick: bool = False) -> str:
    """A report section: ``lines`` (title first), then the machine description; a ``--quick``
    run is marked under the title as a smoke run, not a result."""
    body = list(lines)
    if quick:
        body.insert(2, "**--quick smoke run: not a result.**\n")
    return "\n".join([*body, "", "Machine:", "", *machine]) + "\n"


def section_markers(name: str) -> tuple[str, str]:
    """The start and end markers of section ``name``."""
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def replace_section(text: str, name: str, body: str) -> str:
    """``text`` with the block of section ``name`` replaced by ``body`` (appended if absent)."""
    start, end = section_markers(name)
    block = f"{start}\n{body.rstrip(chr(10))}\n{end}\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end) + r"\n?", re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text, count=1)
    return text.rstrip("\n") + "\n\n" + block


def write_section(name: str, body: str, path: Path = BENCHMARKS_FILE) -> None:
    """Replace section ``name`` of ``path`` (created with a title line if absent)."""
    text = path.read_text(encoding="utf-8") if path.exists() else BENCHMARKS_TITLE
    path.write_text(replace_section(text, name, body), encoding="utf-8")


def report(name: str, body: str, write: Path | None) -> None:
    """Print the section and, with ``--write``, put it into the markdown file."""
    print(body)
    if write is not None:
        write_section(name, body, write)
        print(f"updated section {name!r} of {write}", file=sys.stderr)


def log(message: str) -> None:
    """Progress on stderr (the table goes to stdout)."""
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------- timing


def sync(device: torch.device | str | None = None) -> None:
    """Wait for queued CUDA work (no-op on the CPU)."""
    if torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda"):
        torch.cuda.synchronize()


def time_ms(fn: Callable[[], object], repeats: int = 1, warmup: int = 0) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``repeats`` calls after ``warmup``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def fmt_ms(ms: float) -> str:
    """Milliseconds with sensible precision."""
    return f"{ms:.2f}" if ms < 10 else f"{ms:.1f}" if ms < 1000 else f"{ms:.0f}"


# ---------------------------------------------------------------------------------- images


@dataclass
class BenchImage:
    """One generated test image and its non-difficult ground-truth boxes."""

    image_id: str
    rgb: np.ndarray  # [H, W, 3] uint8
    gt_boxes: np.ndarray  # [M, 4] float32
    jpeg_path: Path


@contextmanager
def generated_images(count: int, seed: int = IMAGE_SEED) -> Iterator[list[BenchImage]]:
    """``count`` shapes test images generated into a temporary directory (removed after)."""
    from app.data.shapes import generate_shapes_dataset
    from app.data.voc import VocDataset

    with tempfile.TemporaryDirectory(prefix="bench-shapes-") as tmp:
        root = Path(tmp)
        generate_shapes_dataset(
            root, seed=seed, n_train=0, n_val=0, n_test=count, progress=False, workers=1
        )
        dataset = VocDataset(root, "test")
        images = []
        for image_id in dataset.ids:
            annotation = dataset.annotation(image_id)
            images.append(
                BenchImage(
                    image_id=image_id,
                    rgb=dataset.load_rgb(image_id),
                    gt_boxes=annotation.boxes[~annotation.difficult],
                    jpeg_path=dataset.image_path(image_id),
                )
            )
        yield images


def photo_500x375() -> np.ndarray:
    """scikit-image's ``chelsea`` photograph resized to 500 x 375 (a typical VOC image size)."""
    import cv2
    from skimage import data

    return cv2.resize(data.chelsea(), (500, 375), interpolation=cv2.INTER_AREA)


def random_windows(count: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """``count`` selective-search-like windows ``[K, 4]`` float32 inside a ``height x width``
    image: sqrt(area) log-uniform in [12, longer side] px, aspect log-uniform in [1/3, 3]."""
    rng = np.random.default_rng(seed)
    side = np.exp(rng.uniform(np.log(12.0), np.log(max(width, height)), count))
    aspect = np.exp(rng.uniform(np.log(1 / 3), np.log(3.0), count))
    w = np.minimum(side * np.sqrt(aspect), width - 1)
    h = np.minimum(side / np.sqrt(aspect), height - 1)
    x1 = rng.uniform(0, width - 1 - w)
    y1 = rng.uniform(0, height - 1 - h)
    return np.stack([x1, y1, x1 + w, y1 + h], axis=1).astype(np.float32)


def exactly_n_windows(proposals: np.ndarray, count: int, height: int, width: int) -> np.ndarray:
    """The first ``count`` proposals, topped up with random windows when there are fewer."""
    proposals = np.asarray(proposals, dtype=np.float32).reshape(-1, 4)[:count]
    if len(proposals) == count:
        return proposals
    extra = random_windows(count - len(proposals), height, width, seed=len(proposals))
    return np.concatenate([proposals, extra])


# ---------------------------------------------------------------------------------- models


def full_zf5_model(classes: Sequence[str] | None = None, seed: int = 0) -> Any:
    """The paper's ZF-5 (width 1.0, fc 4096) with random weights: right for speed only."""
    from app.data.shapes import CLASSES
    from app.model.store import build_random_model

    return build_random_model(
        list(classes or CLASSES), width=1.0, fc_dim=4096, seed=seed, name="zf5-full-random"
    )


def default_model(store: Path = MODEL_STORE, name: str = DEFAULT_MODEL) -> tuple[Any, str]:
    """The trained default model when ``store/name`` exists, else a random stand-in of the
    same size (width 0.25, fc 512). Returns ``(model, description for the report)``."""
    from app.data.shapes import CLASSES
    from app.model.store import build_random_model, load_model

    if (store / name / "manifest.json").is_file():
        model = load_model(store, name)
        return model, f"`{name}` {model.version} (trained, from {store.name}/)"
    model = build_random_model(list(CLASSES), width=0.25, fc_dim=512, seed=0, name=f"{name}-rnd")
    return model, (
        f"random weights at the default model's size (width 0.25, fc 512): "
        f"{store.name}/{name} was not found"
    )


def model_summary(model: Any) -> str:
    """``width w, fc F, spp D-d`` of a model."""
    config = model.manifest.model
    return f"width {config.width:g}, fc {config.fc_dim}, {config.spp_dim}-d pooled vector"
