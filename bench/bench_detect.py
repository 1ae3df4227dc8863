"""Benchmark: ``Detector.detect`` stage by stage, and its cost next to selective search.

Over N generated shapes test images (seed 123, written to a temporary directory):

* proposals: ``app.data.proposals.propose`` at the default model's manifest settings, timed per
  image (the service runs it before ``detect``);
* then ``Detector.detect`` one image at a time, with its stage timings (resize, conv5,
  pooling, fc, svm, regression, nms) and the wall time of the whole call;

for the default model (``model_store/zf5-shapes`` when present, else a random-weight model of
its size: width 0.25, fc 512) and for the full ZF-5 (width 1.0, fc 4096, random weights),
at one scale and at five, in float32 and with ``Detector(precision="bfloat16")`` (conv and
fc6/fc7 under autocast; a CPU gains from it only with native bfloat16 instructions). The
ratio (everything after proposals) / (selective search) is the issue's target: at most 0.25
for the default model at its default settings (one scale). Plus ``Detector.classify`` on the
same images with the default model, ``views="full"`` against ``views="multi"``.

    .venv/bin/python -m bench.bench_detect [--quick] [--images N] [--write [BENCHMARKS.md]]
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from app.data.proposals import propose
from app.inference.detector import STAGES, DetectOptions, Detector, Precision, ScaleMode, ViewMode
from app.model.config import ProposalConfig
from app.model.store import SppModel
from bench.common import (
    BenchImage,
    SizeOption,
    command_line,
    default_model,
    fmt_ms,
    full_zf5_model,
    generated_images,
    log,
    machine_description,
    markdown_table,
    model_summary,
    parse_options,
    render_section,
    report,
    setup_threads,
)

SECTION = "bench_detect"
PRECISIONS: tuple[Precision, ...] = ("float32", "bfloat16")
VIEW_MODES: tuple[ViewMode, ...] = ("full", "multi")


@dataclass
class Breakdown:
    """Mean milliseconds per image of one (model, scale mode)."""

    model: str
    mode: ScaleMode
    precision: Precision
    images: int
    stages: dict[str, float] = field(default_factory=dict)
    wall: float = 0.0
    proposals: float = 0.0  # selective search on the same images
    windows: float = 0.0
    detections: float = 0.0


def measure(
    label: str,
    model: SppModel,
    mode: ScaleMode,
    images: list[BenchImage],
    proposals: list[np.ndarray],
    proposal_ms: list[float],
    precision: Precision = "float32",
) -> Breakdown:
    detector = Detector(model, "cpu", precision)
    detector.warm_up()
    options = DetectOptions(scales=mode)
    # One untimed call at the real size: first-time allocations of this shape.
    detector.detect([images[0].rgb], [proposals[0]], options)
    totals = dict.fromkeys(STAGES, 0.0)
    wall = 0.0
    detections = 0
    for image, boxes in zip(images, proposals, strict=True):
        start = time.perf_counter()
        [result] = detector.detect([image.rgb], [boxes], options)
        wall += (time.perf_counter() - start) * 1e3
        detections += len(result.detections)
        for stage in STAGES:
            totals[stage] += result.timings_ms.get(stage, 0.0)
    n = len(images)
    return Breakdown(
        model=label,
        mode=mode,
        precision=precision,
        images=n,
        stages={stage: ms / n for stage, ms in totals.items()},
        wall=wall / n,
        proposals=float(np.mean(proposal_ms[:n])),
        windows=float(np.mean([len(p) for p in proposals[:n]])),
        detections=detections / n,
    )


def classify_ms(model: SppModel, images: list[BenchImage]) -> dict[str, float]:
    """Mean milliseconds per image of ``Detector.classify`` for each view mode."""
    detector = Detector(model, "cpu")
    detector.warm_up()
    means = {}
    for views in VIEW_MODES:
        detector.classify([images[0].rgb], views=views)  # first call at a real size
        start = time.perf_counter()
        for image in images:
            detector.classify([image.rgb], views=views)
        means[views] = (time.perf_counter() - start) * 1e3 / len(images)
    return means


def timed_proposals(
    images: list[BenchImage], settings: ProposalConfig
) -> tuple[list[np.ndarray], list[float]]:
    """Each image's proposals and the milliseconds ``propose`` took, after one warm-up call."""
    proposals, proposal_ms = [], []
    propose(images[0].rgb, settings)  # warm-up (OpenCV's first call)
    for image in images:
        start = time.perf_counter()
        proposals.append(propose(image.rgb, settings))
        proposal_ms.append((time.perf_counter() - start) * 1e3)
    log(f"selective search: {np.mean(proposal_ms):.0f} ms per image")
    return proposals, proposal_ms


def measure_modes(
    what: str,
    label: str,
    model: SppModel,
    images: list[BenchImage],
    proposals: list[np.ndarray],
    proposal_ms: list[float],
) -> list[Breakdown]:
    """:func:`measure` at one and five scales, at each precision (``what`` names the model in
    the progress log, ``label`` in the table)."""
    rows = []
    for mode in ("single", "multi"):
        for precision in PRECISIONS:
            log(f"{what}, {mode}, {precision}")
            rows.append(measure(label, model, mode, images, proposals, proposal_ms, precision))
    return rows


def breakdown_table(rows: list[Breakdown]) -> str:
    """One table row per measured model, scale mode and precision."""
    table_rows = []
    for row in rows:
        after = row.wall
        table_rows.append(
            [
                row.model,
                "1 (688)" if row.mode == "single" else "5",
                row.precision,
                row.images,
                f"{row.windows:.0f}",
                fmt_ms(row.proposals),
                *(fmt_ms(row.stages[stage]) for stage in STAGES),
                fmt_ms(after),
                f"**{after / row.proposals:.2f}**",
                f"{row.detections:.1f}",
            ]
        )
    return markdown_table(
        [
            "model",
            "scales",
            "precision",
            "images",
            "windows/image",
            "proposals (ms)",
            *(f"{stage} (ms)" for stage in STAGES),
            "detect wall (ms)",
            "after / proposals",
            "detections/image",
        ],
        table_rows,
        align="lllrrr" + "r" * len(STAGES) + "rrr",
    )


@dataclass
class DetectRun:
    """What :func:`run` measured, for the text."""

    rows: list[Breakdown]
    classify: dict[str, float]
    settings: ProposalConfig
    default_text: str
    full_text: str
    sizes: list[str]


def measure_all(count: int, full_count: int) -> DetectRun:
    """The default model (and the full ZF-5 on ``full_count`` images) on generated images."""
    model, default_text = default_model()
    settings = model.manifest.proposals
    log(f"generating {count} images")
    with generated_images(count) as images:
        proposals, proposal_ms = timed_proposals(images, settings)
        rows = measure_modes("default model", "default", model, images, proposals, proposal_ms)
        log("default model, classify")
        classify = classify_ms(model, images)
        if full_count > 0:
            del model
            full = full_zf5_model()
            rows += measure_modes(
                "full ZF-5",
                "ZF-5 full (random)",
                full,
                images[:full_count],
                proposals[:full_count],
                proposal_ms,
            )
            full_text = f"ZF-5 full: random weights, {model_summary(full)}."
        else:
            full_text = "ZF-5 full: skipped (--quick)."
        sizes = [f"{im.rgb.shape[1]}x{im.rgb.shape[0]}" for im in images]
    return DetectRun(rows, classify, settings, default_text, full_text, sizes)


def run(count: int, full_count: int, quick: bool) -> str:
    setup_threads()
    machine = machine_description()
    measured = measure_all(count, full_count)
    rows, classify, settings = measured.rows, measured.classify, measured.settings
    target = next(
        r for r in rows if (r.model, r.mode, r.precision) == ("default", "single", "float32")
    )
    verdict = "met" if target.wall / target.proposals <= 0.25 else "NOT met"
    lines = [
        "## detect: per-stage breakdown, default model and full ZF-5, 1 and 5 scales",
        "",
        f"Command: `{command_line('bench.bench_detect')}`",
        "",
        f"{count} generated shapes test images (seed 123; sizes {', '.join(measured.sizes)}), "
        "one image per `Detector.detect` call, CPU, mean milliseconds per image after one "
        "untimed call. *proposals* is `app.data.proposals.propose` at the default model's "
        f"manifest settings (max side {settings.max_side}, at most {settings.max_proposals} "
        f"proposals, min size {settings.min_size:g}), measured on the same images. The stage "
        "columns are `DetectionResult.timings_ms`; *detect wall* is the whole `detect` call "
        "(stages plus box conversion and scale choice), i.e. everything after proposals; "
        "*after / proposals* divides it by the selective-search time.",
        "",
        f"Default model: {measured.default_text}. {measured.full_text} The full ZF-5 rows use "
        f"the first {max(full_count, 0)} image(s) only (same proposals).",
        "",
        breakdown_table(rows),
        f"Issue target: with the default model at its default settings (one scale), everything "
        f"after proposals takes at most 0.25 of the selective-search time: measured "
        f"{target.wall / target.proposals:.2f} ({verdict}).",
        "",
        "`Detector.classify`, default model, float32, the same images, one per call (mean ms "
        "per image): `views=full` (one view at the shorter side 224) against `views=multi` "
        "(conv5 at six scales, nine views each).",
        "",
        markdown_table(
            ["views", "classify (ms)", "vs full"],
            [[v, fmt_ms(ms), f"{ms / classify['full']:.1f}x"] for v, ms in classify.items()],
        ),
    ]
    return render_section(lines, machine, quick=quick)


def main(argv: list[str] | None = None) -> None:
    args = parse_options(
        __doc__,
        argv,
        SizeOption("--images", full=8, quick=2, what="images"),
        SizeOption("--full-images", full=2, quick=0, what="images for full ZF-5", zero_skips=True),
    )
    report(SECTION, run(args.images, min(args.full_images, args.images), args.quick), args.write)


if __name__ == "__main__":
    main()
