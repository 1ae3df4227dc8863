"""Precision-recall curves of a VOC evaluation, saved as PNG.

Uses Matplotlib's object API with the Agg canvas directly (no pyplot, no global backend switch),
so importing this module changes no state and it works without a display.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from app.evaluation.voc_ap import ClassResult, EvaluationResult


def _new_axes(title: str) -> tuple[Figure, Axes]:
    figure = Figure(figsize=(7.0, 6.0), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    axes.set_xlim(0.0, 1.0)
    axes.set_ylim(0.0, 1.02)
    axes.set_xlabel("recall")
    axes.set_ylabel("precision")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    return figure, axes


def _curve(result: ClassResult) -> tuple[list[float], list[float]]:
    """The PR points with a leading (0, first precision) point so a curve starts on the axis."""
    if result.recall.size == 0:
        return [], []
    recall = [0.0, *result.recall.tolist()]
    precision = [float(result.precision[0]), *result.precision.tolist()]
    return recall, precision


def _ap_text(ap: float) -> str:
    return "n/a" if math.isnan(ap) else f"{ap:.3f}"


def plot_precision_recall(result: EvaluationResult, path: Path, title: str | None = None) -> Path:
    """One figure with the PR curve of every class, its AP in the legend.

    Args:
        result: the evaluation to draw.
        path: the PNG file to write (parent directories are created).
        title: figure title; default names the mAP.

    Returns:
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    heading = title or f"VOC07 11-point AP, mAP = {_ap_text(result.map)}"
    figure, axes = _new_axes(heading)
    for label, class_result in result.per_class.items():
        recall, precision = _curve(class_result)
        axes.plot(
            recall, precision, linewidth=1.5, label=f"{label} (AP {_ap_text(class_result.ap)})"
        )
    if result.per_class:
        axes.legend(loc="lower left", fontsize=8)
    figure.savefig(path, format="png")
    return path


def plot_precision_recall_per_class(result: EvaluationResult, out_dir: Path) -> list[Path]:
    """One PNG per class, ``pr_<label>.png`` in ``out_dir``.

    Returns:
        The written paths, in class order.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for label, class_result in result.per_class.items():
        figure, axes = _new_axes(
            f"{label}: AP {_ap_text(class_result.ap)}, {class_result.npos} objects"
        )
        recall, precision = _curve(class_result)
        axes.plot(recall, precision, linewidth=1.5)
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", label)
        path = out_dir / f"pr_{safe}.png"
        figure.savefig(path, format="png")
        paths.append(path)
    return paths
