"""Benchmark: feature extraction, SPP-net (conv5 once per image and scale) vs R-CNN style
(one conv pass per warped window), full ZF-5, same image, same 2000 windows.

* SPP path: ``Detector.pooled_windows``: resize, conv5 once per scale some window chose,
  ``project_windows`` + ``roi_spp``. One scale (688) and five (480 .. 1200, each window picks
  the scale that makes it closest to 224 x 224, docs/model.md §4).
* R-CNN path: ``rcnn_window_features`` of ``tests/references/rcnn.py``: each window cropped,
  warped to 224 x 224, conv1..conv5, full-map pyramid pooling. It has no scales (every window
  is warped to 224), so one measurement serves both rows. It runs on a stated, evenly spaced
  sample of the windows and is extrapolated linearly to all of them (its cost is the same for
  every window).
* fc6/fc7 on the 2000 pooled vectors (one GEMM each): the same work on both paths, measured
  once and added to both totals, as the paper does (its 102x and 38x include fc).

The model is ZF-5 at width 1.0 with fc 4096 and **random weights** (speed does not depend on
the values). The image is scikit-image's ``chelsea`` photo resized to 500 x 375; its windows are
its selective-search proposals, topped up with random selective-search-like windows to 2000.

    .venv/bin/python -m bench.bench_features [--quick] [--write [BENCHMARKS.md]]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from app.data.proposals import propose
from app.inference.detector import Detector
from app.model.store import SppModel
from app.ops.boxes import choose_scale_per_window
from app.ops.spp import spatial_pyramid_pool
from bench.common import (
    command_line,
    default_model,
    exactly_n_windows,
    fmt_ms,
    full_zf5_model,
    log,
    machine_description,
    markdown_table,
    model_summary,
    parser_for,
    photo_500x375,
    render_section,
    report,
    setup_threads,
    time_ms,
)
from tests.references.rcnn import WARP_SIZE, rcnn_window_features

SECTION = "bench_features"


@dataclass
class PathTimes:
    """Milliseconds per image of one path at one scale setting."""

    conv: float  # SPP: resize + conv5; R-CNN: warp + conv1..conv5 (extrapolated)
    pooling: float
    fc: float
    scales: str = ""

    @property
    def total(self) -> float:
        return self.conv + self.pooling + self.fc

    @property
    def features(self) -> float:
        """Everything but fc6/fc7."""
        return self.conv + self.pooling


def time_spp(
    detector: Detector, image: np.ndarray, boxes: torch.Tensor, scales: Sequence[int], repeats: int
) -> tuple[float, float, list[int], torch.Tensor]:
    """Median (resize + conv5 ms, pooling ms), the scales used and the pooled vectors."""
    conv, pool = [], []
    pooled, used = torch.empty(0), []
    for _ in range(repeats):
        stages: dict[str, float] = {}
        pooled, used = detector.pooled_windows(image, boxes, scales, timings=stages)
        conv.append(stages.get("resize", 0.0) + stages.get("conv5", 0.0))
        pool.append(stages.get("pooling", 0.0))
    return float(np.median(conv)), float(np.median(pool)), used, pooled


def time_rcnn(
    model: SppModel, image: np.ndarray, sample: np.ndarray, repeats: int
) -> tuple[float, float]:
    """(warp + conv ms, pooling ms) for the ``sample`` windows (not extrapolated)."""
    total = time_ms(lambda: rcnn_window_features(model, image, sample), repeats)
    # The pooling part alone: full-map pyramid pooling of a batch of 224 x 224 conv5 maps.
    with torch.inference_mode():
        x = torch.zeros(1, 3, WARP_SIZE, WARP_SIZE)
        conv5 = model.net.trunk(x).expand(len(sample), -1, -1, -1).contiguous()
        levels = model.manifest.model.levels
        pool = time_ms(lambda: spatial_pyramid_pool(conv5, levels), max(3, repeats))
    return total - pool, pool


@dataclass
class Setup:
    """The model, the image and the windows both paths run on."""

    model: SppModel
    model_text: str
    repeats: int
    detector: Detector
    image: np.ndarray
    boxes: torch.Tensor  # [count, 4]
    sample: np.ndarray  # [len(sample), 4], the R-CNN path's evenly spaced sample
    from_ss: int  # windows that are selective-search proposals

    @property
    def count(self) -> int:
        return len(self.boxes)

    @property
    def factor(self) -> float:
        """R-CNN extrapolation: all windows over the sample."""
        return self.count / len(self.sample)


def make_setup(quick: bool) -> Setup:
    """A small random model (quick) or the full ZF-5, the photo, its windows and the sample."""
    if quick:
        model, _ = default_model()
        model_text = f"**--quick smoke run** on a small random model ({model_summary(model)})"
        count, sample_size, repeats = 100, 4, 1
    else:
        model = full_zf5_model()
        model_text = f"ZF-5 with **random weights** ({model_summary(model)})"
        count, sample_size, repeats = 2000, 32, 3
    detector = Detector(model, "cpu")
    image = photo_500x375()
    height, width = image.shape[:2]
    proposals = propose(image)
    windows = exactly_n_windows(proposals, count, height, width)
    from_ss = min(len(proposals), count)
    sample = windows[:: max(1, count // sample_size)][:sample_size]
    boxes = torch.from_numpy(windows)
    return Setup(model, model_text, repeats, detector, image, boxes, sample, from_ss)


def measure_paths(setup: Setup) -> tuple[dict[str, PathTimes], PathTimes]:
    """SPP-net at one and five scales, and the R-CNN path extrapolated, fc6/fc7 on both."""
    model, image, boxes, sample, repeats = (
        setup.model,
        setup.image,
        setup.boxes,
        setup.sample,
        setup.repeats,
    )
    detector = setup.detector
    log("warm-up (numba load, allocator)")
    detector.pooled_windows(image, boxes[:8], detector.scales_for("single"))
    rcnn_window_features(model, image, sample)
    results: dict[str, PathTimes] = {}
    pooled = torch.empty(0)
    for mode in ("single", "multi"):
        log(f"SPP path, {mode} scale")
        conv, pool, used, pooled = time_spp(
            detector, image, boxes, detector.scales_for(mode), repeats
        )
        results[f"spp-{mode}"] = PathTimes(conv, pool, 0.0, scales=", ".join(map(str, used)))
    log(f"fc6/fc7 on {setup.count} windows")
    with torch.inference_mode():
        fc_ms = time_ms(lambda: model.net.det_head(pooled), repeats, warmup=1)
    log(f"R-CNN path on {len(sample)} windows")
    rcnn_conv, rcnn_pool = time_rcnn(model, image, sample, repeats)
    factor = setup.factor
    rcnn = PathTimes(rcnn_conv * factor, rcnn_pool * factor, fc_ms, scales="warp to 224")
    for key in results:
        results[key].fc = fc_ms
    return results, rcnn


def scale_choice_counts(setup: Setup) -> str:
    """How many windows pick each scale in 5-scale mode, e.g. ``480: 12, 576: 30, ...``."""
    multi = setup.detector.scales_for("multi")
    height, width = setup.image.shape[:2]
    picks = choose_scale_per_window(setup.boxes, multi, min(height, width))
    counts = picks.bincount(minlength=len(multi))
    return ", ".join(f"{s}: {int(n)}" for s, n in zip(multi, counts, strict=True))


def comparison_table(setup: Setup, results: dict[str, PathTimes], rcnn: PathTimes) -> str:
    """Per setting, the SPP-net row and the R-CNN row with the ratios."""
    rows = []
    for label, key in (("1 scale (688)", "spp-single"), ("5 scales", "spp-multi")):
        spp = results[key]
        rows.append(
            [
                label,
                "SPP-net",
                spp.scales,
                fmt_ms(spp.conv),
                fmt_ms(spp.pooling),
                fmt_ms(spp.fc),
                fmt_ms(spp.total),
                "",
                "",
            ]
        )
        rows.append(
            [
                label,
                f"R-CNN style (~, {len(setup.sample)} of {setup.count} windows x {setup.factor:g})",
                rcnn.scales,
                f"~{fmt_ms(rcnn.conv)}",
                f"~{fmt_ms(rcnn.pooling)}",
                fmt_ms(rcnn.fc),
                f"~{fmt_ms(rcnn.total)}",
                f"**{rcnn.total / spp.total:.1f}x**",
                f"{rcnn.features / spp.features:.0f}x",
            ]
        )
    return markdown_table(
        [
            "setting",
            "path",
            "scales run",
            "conv (ms)",
            "pooling (ms)",
            "fc6+fc7 (ms)",
            "total (ms)",
            "R-CNN / SPP, total",
            "R-CNN / SPP, without fc",
        ],
        rows,
        align="llrrrrrrr",
    )


def targets_text(results: dict[str, PathTimes], rcnn: PathTimes) -> str:
    """The measured ratios next to the issue's targets."""
    single, multi_t = results["spp-single"], results["spp-multi"]
    return (
        f"Issue targets (paper: 102x at one scale, 38x at five, fc included): >= 100x at one "
        f"scale, >= 30x at five. Measured, fc included: "
        f"{rcnn.total / single.total:.1f}x and {rcnn.total / multi_t.total:.1f}x; "
        f"conv + pooling only: {rcnn.features / single.features:.0f}x and "
        f"{rcnn.features / multi_t.features:.0f}x."
    )


def setup_text(setup: Setup) -> str:
    """The paragraph saying what was measured on what."""
    height, width = setup.image.shape[:2]
    count, from_ss = setup.count, setup.from_ss
    return (
        f"Model: {setup.model_text}; speed does not depend on the weights. Image: "
        f"scikit-image's `chelsea` photo resized to {width} x {height}; {count} windows: its "
        f"{from_ss} selective-search proposals (max side 500) plus {count - from_ss} random "
        f"selective-search-like windows; the same windows on both paths. "
        f"Milliseconds per image, median of {setup.repeats} run(s), "
        f"{torch.get_num_threads()} torch threads. *conv* is resize + conv5 for SPP-net and "
        "warp + conv1..conv5 for R-CNN; *pooling* is `roi_spp` (SPP-net) or full-map pyramid "
        "pooling of each warped window (R-CNN). The R-CNN path ran on an evenly spaced sample "
        f"of {len(setup.sample)} windows and is extrapolated linearly (marked ~): every window "
        "costs the same conv pass at 224 x 224, so the extrapolation is exact up to noise. It "
        "has no scales, so the same R-CNN numbers stand against both SPP-net settings. "
        f"fc6/fc7 on {count} pooled vectors is measured once and counted on both sides."
    )


def run(quick: bool) -> str:
    setup_threads()
    machine = machine_description()
    setup = make_setup(quick)
    results, rcnn = measure_paths(setup)
    lines = [
        "## Feature extraction: SPP-net vs R-CNN style, full ZF-5",
        "",
        f"Command: `{command_line('bench.bench_features')}`",
        "",
        setup_text(setup),
        "",
        comparison_table(setup, results, rcnn),
        targets_text(results, rcnn),
        "",
        f"Windows per scale in 5-scale mode (each picks the scale closest to 224 x 224): "
        f"{scale_choice_counts(setup)}; conv5 ran only at the scales listed.",
        "",
        "On a CPU, fc6/fc7 for 2000 windows (about 2 x 2000 x (12800 x 4096 + 4096 x 4096) = "
        "277 GFLOP) costs several times the 688-scale conv5 (about 31 GFLOP), so it dominates "
        "SPP-net's total and caps the ratio with fc included well below the paper's, whose GPU "
        "ran fc in 0.089 s; the conv + pooling ratio is the one the SPP idea changes. "
        "`bench_compress` measures the SVD-compressed fc.",
    ]
    return render_section(lines, machine)


def main(argv: list[str] | None = None) -> None:
    args = parser_for(__doc__).parse_args(argv)
    report(SECTION, run(args.quick), args.write)


if __name__ == "__main__":
    main()
