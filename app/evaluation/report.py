"""The JSON report of an evaluation: AP per class, mAP, proposal recall and the settings."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from app.evaluation.recall import ProposalRecall
from app.evaluation.voc_ap import EvaluationResult


def _finite(value: Any) -> Any:
    """Replace NaN/inf by None recursively so the report is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def build_report(
    result: EvaluationResult,
    *,
    recall: ProposalRecall | None = None,
    settings: Mapping[str, Any] | None = None,
    plots: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The report as a JSON-ready dict.

    Args:
        result: the detection evaluation.
        recall: proposal recall, when measured.
        settings: how the run was made (dataset root, split, model, scales, command, ...).
        plots: names of the written plot files, by kind.

    Returns:
        ``{"detection": ..., "proposal_recall": ... | None, "settings": ..., "plots": ...}``.
    """
    return _finite(
        {
            "detection": result.to_dict(),
            "proposal_recall": recall.to_dict() if recall is not None else None,
            "settings": dict(settings or {}),
            "plots": dict(plots or {}),
        }
    )


def write_report(path: Path, report: Mapping[str, Any]) -> Path:
    """Write ``report`` as indented strict JSON (parents created) and return ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_finite(report), indent=2, allow_nan=False) + "\n")
    return path
