"""Benchmark: truncated-SVD compression of fc6/fc7 (``app.model.compress``) and reduced
precision: speed of the fc stage, and the effect on features, detections and mAP.

* fc stage speed, 2000 windows in one pass: full fc6/fc7 vs ranks fc/4 and fc/8 (both layers),
  for the full ZF-5 (fc 4096; random weights, and random factors of the compressed shapes:
  speed does not depend on the values, and a 4096 x 12800 SVD would take a minute) and for the
  default model (real SVD of its weights). Plus bfloat16 autocast on the CPU (cheap to try;
  this CPU reports ``avx512_bf16`` or not, see below) and float16 autocast on CUDA.
* Effect, default model: relative error of the fc7 output and of the SVM scores on the pooled
  windows of a generated image; agreement of detections (each of the reference's top 20
  detections per image matched by a same-class detection with IoU >= 0.9) over a few
  generated images.
* mAP, when ``model_store/zf5-shapes`` and ``work_data/shapes-test`` (VOC layout, cached
  proposals in ``cache/``) both exist: ``detect_split`` + ``evaluate_detections`` on the first
  N test images for each variant.
* Half precision on CUDA (float16 autocast around ``detect``): detections compared with
  float32; skipped with a line saying so on a CPU-only machine.

    .venv/bin/python -m bench.bench_compress [--quick] [--map-images N] [--write [BENCHMARKS.md]]
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.ops import box_iou

from app.data.proposals import propose
from app.inference.detector import DetectionResult, DetectOptions, Detector
from app.model.compress import LowRankLinear, compress_detector_model
from app.model.heads import FcHead
from app.model.store import SppModel
from bench.common import (
    REPO_ROOT,
    SizeOption,
    command_line,
    cpu_model,
    default_model,
    exactly_n_windows,
    fmt_ms,
    generated_images,
    log,
    machine_description,
    markdown_table,
    parse_options,
    render_section,
    report,
    setup_threads,
    time_ms,
)

SECTION = "bench_compress"
WINDOWS = 2000
TEST_SPLIT_ROOT = REPO_ROOT / "work_data" / "shapes-test"
MATCH_IOU = 0.9
TOP_PER_IMAGE = 20


def random_low_rank_head(head: FcHead, rank: int) -> FcHead:
    """``head`` with fc6/fc7 replaced by random low-rank layers of the compressed shapes."""
    import copy

    out = copy.deepcopy(head)
    for name in ("fc6", "fc7"):
        layer = getattr(head, name)
        assert isinstance(layer, nn.Linear)
        low = LowRankLinear(layer.in_features, layer.out_features, rank)
        out.add_module(name, low.requires_grad_(False))
    return out.eval()


@contextlib.contextmanager
def autocast(kind: str, device: str = "cpu") -> Iterator[None]:
    """``fp32``: nothing; ``bf16``/``fp16``: torch autocast on ``device``."""
    if kind == "fp32":
        yield
        return
    dtype = torch.bfloat16 if kind == "bf16" else torch.float16
    with torch.autocast(device_type=device, dtype=dtype):
        yield


def fc_ms(head: nn.Module, x: Tensor, kind: str, repeats: int) -> float:
    def call() -> None:
        with torch.inference_mode(), autocast(kind, x.device.type):
            head(x)

    return time_ms(call, repeats, warmup=1)


def relative_error(approx: Tensor, exact: Tensor) -> float:
    return float((approx.float() - exact.float()).norm() / exact.float().norm().clamp_min(1e-12))


def detection_agreement(
    reference: list[DetectionResult], other: list[DetectionResult]
) -> tuple[float, float]:
    """(fraction of the reference's top detections matched, median |score difference|)."""
    matched, total, diffs = 0, 0, []
    for ref, oth in zip(reference, other, strict=True):
        top = sorted(ref.detections, key=lambda d: -d.score)[:TOP_PER_IMAGE]
        for det in top:
            total += 1
            same = [d for d in oth.detections if d.label == det.label]
            if not same:
                continue
            ious = box_iou(torch.tensor([det.box]), torch.tensor([d.box for d in same]))[0]
            best = int(ious.argmax())
            if float(ious[best]) >= MATCH_IOU:
                matched += 1
                diffs.append(abs(same[best].score - det.score))
    return (matched / total if total else float("nan")), (
        float(np.median(diffs)) if diffs else float("nan")
    )


@dataclass
class Variant:
    label: str
    model: SppModel
    precision: str = "fp32"


def detect_all(
    variant: Variant, images: list[np.ndarray], proposals: list[np.ndarray], device: str = "cpu"
) -> list[DetectionResult]:
    detector = Detector(variant.model, device)
    options = DetectOptions(min_confidence=0.0)
    results = []
    for image, boxes in zip(images, proposals, strict=True):
        with autocast(variant.precision, detector.device.type):
            results.extend(detector.detect([image], [boxes], options))
    return results


def map_for(variant: Variant, limit: int) -> float:
    from app.data.proposal_cache import dataset_proposals
    from app.data.voc import VocDataset
    from app.evaluation.runner import detect_split
    from app.evaluation.voc_ap import evaluate_detections

    dataset = VocDataset(TEST_SPLIT_ROOT, "test")
    dataset.ids = dataset.ids[:limit]
    proposals = dataset_proposals(
        dataset,
        variant.model.manifest.proposals,
        TEST_SPLIT_ROOT / "cache",
        ids=dataset.ids,
        workers=1,
        progress=False,
    )
    detector = Detector(variant.model, "cpu")
    with autocast(variant.precision):
        records, _ = detect_split(detector, dataset, proposals, "single", progress=False)
    annotations = {i: dataset.annotation(i) for i in dataset.ids}
    return evaluate_detections(records, annotations, variant.model.classes).map


def speed_rows(
    label: str,
    head: FcHead,
    variants: list[tuple[str, nn.Module, str]],
    x: Tensor,
    repeats: int,
    errors: dict[str, str],
) -> list[list[Any]]:
    base = fc_ms(head, x, "fp32", repeats)
    rows = [[label, "fc6/fc7 full, float32", fmt_ms(base), "1.00x", "0 (reference)"]]
    for name, module, kind in variants:
        ms = fc_ms(module, x, kind, repeats)
        rows.append([label, name, fmt_ms(ms), f"**{base / ms:.2f}x**", errors.get(name, "n/a")])
    return rows


def full_zf5_rows(windows: int, repeats: int) -> list[list[Any]]:
    """Speed rows of the full ZF-5 fc (random weights and random factors; speed only)."""
    log("full ZF-5 fc speed")
    torch.manual_seed(0)
    full_head = FcHead(12800, 4096, 0.5).eval().requires_grad_(False)
    x_full = torch.relu(torch.randn(windows, 12800))
    with torch.inference_mode():
        ref = full_head(x_full)
        with autocast("bf16"):
            bf16_err = relative_error(full_head(x_full), ref)
    variants_full = [
        (f"rank {r} (fc/{4096 // r})", random_low_rank_head(full_head, r), "fp32")
        for r in (1024, 512)
    ]
    variants_full.append(("bfloat16 autocast", full_head, "bf16"))
    return speed_rows(
        "ZF-5 full (random)",
        full_head,
        variants_full,
        x_full,
        repeats,
        {"bfloat16 autocast": f"{bf16_err:.4f} (fc7 output)"},
    )


@dataclass
class DefaultModelRun:
    """The default model, its compressed copies and the generated images they are run on."""

    model: SppModel
    description: str
    compressed: dict[int, SppModel]
    images: list[np.ndarray]
    proposals: list[np.ndarray]

    @property
    def fc(self) -> int:
        return self.model.manifest.model.fc_dim

    def label(self, rank: int) -> str:
        return f"rank {rank} (fc/{self.fc // rank})"


def prepare_default_model(count: int) -> DefaultModelRun:
    """The default model compressed at ranks fc/4 and fc/8, and ``count`` generated images."""
    log("default model")
    model, default_text = default_model()
    fc = model.manifest.model.fc_dim
    ranks = (fc // 4, fc // 8)
    compressed = {r: compress_detector_model(model, r, r) for r in ranks}
    with generated_images(count) as bench_images:
        images = [im.rgb for im in bench_images]
        proposals = [propose(im, model.manifest.proposals) for im in images]
    return DefaultModelRun(model, default_text, compressed, images, proposals)


def feature_errors(run: DefaultModelRun, pooled: Tensor) -> dict[str, str]:
    """Relative errors of fc7 and of the SVM scores of each variant on ``pooled`` windows."""
    model = run.model
    errors: dict[str, str] = {}
    with torch.inference_mode():
        ref7 = model.net.det_head(pooled)
        ref_scores = model.net.svm(ref7)
        for r, small in run.compressed.items():
            out7 = small.net.det_head(pooled)
            errors[run.label(r)] = (
                f"{relative_error(out7, ref7):.4f} (fc7), "
                f"{relative_error(small.net.svm(out7), ref_scores):.4f} (SVM scores)"
            )
        with autocast("bf16"):
            out7 = model.net.det_head(pooled)
            scores = model.net.svm(out7)
        errors["bfloat16 autocast"] = (
            f"{relative_error(out7, ref7):.4f} (fc7), "
            f"{relative_error(scores, ref_scores):.4f} (SVM scores)"
        )
    return errors


def default_model_rows(run: DefaultModelRun, windows: int, repeats: int) -> list[list[Any]]:
    """Speed and error rows of the default model's fc on ``windows`` pooled windows."""
    model, images = run.model, run.images
    detector = Detector(model, "cpu")
    first = torch.from_numpy(exactly_n_windows(run.proposals[0], windows, *images[0].shape[:2]))
    pooled, _ = detector.pooled_windows(images[0], first, detector.scales_for("single"))
    errors = feature_errors(run, pooled)
    variants_default: list[tuple[str, nn.Module, str]] = [
        (run.label(r), small.net.det_head, "fp32") for r, small in run.compressed.items()
    ]
    variants_default.append(("bfloat16 autocast", model.net.det_head, "bf16"))
    return speed_rows("default", model.net.det_head, variants_default, pooled, repeats, errors)


def compared_variants(run: DefaultModelRun) -> list[Variant]:
    """The compressed models and bfloat16 autocast, each compared with the float32 model."""
    variants = [Variant(run.label(r), small) for r, small in run.compressed.items()]
    variants.append(Variant("bfloat16 autocast", run.model, "bf16"))
    return variants


def agreement_rows(run: DefaultModelRun, variants: list[Variant]) -> list[list[Any]]:
    """Per variant: the share of the float32 model's top detections kept, the score change."""
    log("detections")
    reference = detect_all(Variant("fp32", run.model), run.images, run.proposals)
    rows = []
    for variant in variants:
        found = detect_all(variant, run.images, run.proposals)
        matched, diff = detection_agreement(reference, found)
        rows.append([variant.label, f"{matched:.3f}", f"{diff:.4f}"])
    return rows


def map_lines(run: DefaultModelRun, variants: list[Variant], map_images: int) -> list[str]:
    """The mAP table on the cached test split, or the line saying why it was skipped."""
    trained = "trained" in run.description
    have_split = (TEST_SPLIT_ROOT / "ImageSets" / "Main" / "test.txt").is_file()
    if trained and have_split and map_images > 0:
        log(f"mAP on {map_images} test images")
        reference_map = map_for(Variant("fp32", run.model), map_images)
        map_rows = [["fp32 (reference)", f"{reference_map:.4f}"]]
        for variant in variants:
            map_rows.append([variant.label, f"{map_for(variant, map_images):.4f}"])
        return [
            f"mAP (VOC07 11-point, single scale) on the first {map_images} images of "
            f"`work_data/shapes-test` with its cached proposals:",
            "",
            markdown_table(["variant", "mAP"], map_rows),
        ]
    reason = (
        "the default model is not trained (model_store/zf5-shapes absent)"
        if not trained
        else "work_data/shapes-test is absent"
        if not have_split
        else "--map-images 0"
    )
    return [f"mAP effect: skipped: {reason}.", ""]


def half_precision_text(run: DefaultModelRun) -> str:
    """float16 autocast on CUDA against float32, or the line saying there is no CUDA device."""
    if not torch.cuda.is_available():
        return (
            "Half precision (float16) on CUDA: skipped, no CUDA device on this machine; "
            "bfloat16 autocast on the CPU is measured instead (rows above)."
        )
    log("fp16 on CUDA")
    gpu_model = compress_detector_model(run.model, None, None)  # a copy for the GPU
    ref_gpu = detect_all(Variant("fp32", gpu_model), run.images, run.proposals, "cuda")
    half = detect_all(Variant("fp16", gpu_model, "fp16"), run.images, run.proposals, "cuda")
    matched, diff = detection_agreement(ref_gpu, half)
    return (
        f"Half precision on CUDA ({torch.cuda.get_device_name(0)}): float16 autocast around "
        f"`detect` vs float32: {matched:.3f} of the top detections matched, median |score "
        f"difference| {diff:.4f}."
    )


def cpu_bf16_note() -> str:
    """Whether this CPU reports native bfloat16 (``avx512_bf16`` in /proc/cpuinfo)."""
    cpuinfo = Path("/proc/cpuinfo")
    bf16_flag = cpuinfo.exists() and "avx512_bf16" in cpuinfo.read_text()
    return f"CPU `{cpu_model()}` " + (
        "reports `avx512_bf16`." if bf16_flag else "does not report `avx512_bf16`."
    )


def speed_text(windows: int, repeats: int, default_text: str) -> str:
    """The paragraph above the speed table."""
    return (
        f"fc stage (fc6 + ReLU + fc7 + ReLU) on {windows} windows in one pass, median of "
        f"{repeats} call(s) after a warm-up, {torch.get_num_threads()} torch threads. Both fc6 "
        "and fc7 are factorised at the rank shown (`compress_detector_model(model, r, r)`; "
        "W ~= U_r S_r V_r^T, first layer without bias). Full ZF-5: random weights and random "
        "factors of the compressed shapes (speed only; no error to report). Default model: "
        f"{default_text}; its error column compares with the float32 head on the pooled "
        f"vectors of {windows} windows of a generated image (relative L2 error). Random "
        "weights have a flat singular spectrum, the worst case for truncation; trained "
        "weights keep more of their energy in the leading singular values."
    )


def run(quick: bool, map_images: int) -> str:
    setup_threads()
    machine = machine_description()
    repeats = 1 if quick else 3
    windows = 200 if quick else WINDOWS
    rows: list[list[Any]] = [] if quick else full_zf5_rows(windows, repeats)
    count = 2 if quick else 4
    default_run = prepare_default_model(count)
    rows += default_model_rows(default_run, windows, repeats)
    variants = compared_variants(default_run)
    agreement = agreement_rows(default_run, variants)
    map_text = map_lines(default_run, variants, map_images)
    half_text = half_precision_text(default_run)
    lines = [
        "## fc6/fc7 compression: truncated SVD and reduced precision",
        "",
        f"Command: `{command_line('bench.bench_compress')}`",
        "",
        speed_text(windows, repeats, default_run.description),
        "",
        markdown_table(
            ["model", "fc variant", "fc (ms)", "speed-up", "relative error"],
            rows,
            align="llrrl",
        ),
        f"Detections, default model, {count} generated images, single scale: share of the "
        f"float32 model's top {TOP_PER_IMAGE} detections per image found again (same class, "
        f"IoU >= {MATCH_IOU}) and the median |SVM score difference| of those:",
        "",
        markdown_table(["variant", "top detections kept", "median score diff"], agreement),
        *map_text,
        half_text,
        "",
        cpu_bf16_note(),
    ]
    return render_section(lines, machine, quick=quick)


def main(argv: list[str] | None = None) -> None:
    args = parse_options(
        __doc__,
        argv,
        SizeOption(
            "--map-images", full=40, quick=0, what="test images for the mAP effect", zero_skips=True
        ),
    )
    report(SECTION, run(args.quick, args.map_images), args.write)


if __name__ == "__main__":
    main()
