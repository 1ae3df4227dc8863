"""Is one detector better than another beyond noise? A paired bootstrap over test images.

Both detectors' detections on the same images are scored on the same resamples of those
images (drawn with replacement); the spread of the mAP difference over the resamples is the
noise a different test set of the same kind would show. Each resample is exact VOC 2007 AP,
computed without re-matching: within one image, matching is greedy in descending score order,
so a detection's outcome (true positive, false positive, or ignored on a difficult box) does
not depend on which other images are in the resample, and a copied image repeats its
outcomes. A resample is therefore a weighting of images, and a class's AP is the 11-point AP
of the weighted cumulative counts (:func:`weighted_map`). Runs of copies of one detection
are counted as one step, which gives the same 11-point AP as counting them one by one: a run
of true positives only raises precision, a run of false positives leaves recall unchanged.

No library does this on VOC AP (``scipy.stats.bootstrap`` resamples a statistic of arrays,
and re-running the matcher per resample is about a thousand times slower), hence by hand;
``tests/evaluation/test_bootstrap.py`` checks it against the matcher on explicitly copied
images.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from app.data.voc import VocAnnotation
from app.evaluation.voc_ap import evaluate_detections, voc_ap_11point


@dataclass(frozen=True)
class ClassOutcomes:
    """The counted detections of one class, by descending score.

    Attributes:
        image: np.ndarray[D] int64, each detection's image (index into the image order).
        tp: np.ndarray[D] bool, true positive flag.
        npos: np.ndarray[N] int64, non-difficult ground truth of the class in each image.
    """

    image: np.ndarray
    tp: np.ndarray
    npos: np.ndarray


def detection_outcomes(
    detections: Sequence[Mapping[str, Any]],
    annotations: Mapping[str, VocAnnotation],
    classes: Sequence[str],
) -> dict[str, ClassOutcomes]:
    """Each class's matched detections (the VOC 2007 matcher once), by image index in
    ``annotations``' order."""
    index = {image_id: k for k, image_id in enumerate(annotations)}
    result = evaluate_detections(detections, annotations, classes)
    outcomes = {}
    for label, cls in result.per_class.items():
        npos = np.asarray(
            [
                sum(
                    name == label and not hard
                    for name, hard in zip(a.labels, a.difficult, strict=True)
                )
                for a in annotations.values()
            ],
            np.int64,
        )
        image = np.asarray([index[detections[i]["image_id"]] for i in cls.indices], np.int64)
        outcomes[label] = ClassOutcomes(image=image, tp=cls.tp.copy(), npos=npos)
    return outcomes


def weighted_map(outcomes: Mapping[str, ClassOutcomes], weights: np.ndarray) -> float:
    """mAP when image ``k`` counts ``weights[k]`` times (VOC 2007 11-point AP per class,
    mean over the classes with ground truth)."""
    aps = []
    for cls in outcomes.values():
        npos = int(weights @ cls.npos)
        if npos == 0:
            continue
        w = weights[cls.image].astype(np.float64)  # [D]; an image not drawn adds no step
        tp_cum = np.cumsum(w * cls.tp)
        fp_cum = np.cumsum(w * ~cls.tp)
        precision = tp_cum / np.maximum(tp_cum + fp_cum, np.finfo(np.float64).eps)
        aps.append(voc_ap_11point(tp_cum / npos, precision))
    return float(np.mean(aps)) if aps else math.nan


@dataclass(frozen=True)
class BootstrapComparison:
    """``b`` against ``a`` on the same images.

    Attributes:
        map_a, map_b: mAP on the whole set.
        difference: ``map_b - map_a`` on the whole set.
        sd: standard deviation of the difference over the resamples.
        low, high: its 2.5 and 97.5 percentiles.
        b_better: fraction of resamples where ``b`` scores higher.
        resamples, images, seed: how it was drawn.
    """

    map_a: float
    map_b: float
    difference: float
    sd: float
    low: float
    high: float
    b_better: float
    resamples: int
    images: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return {k: round(v, 5) if isinstance(v, float) else v for k, v in asdict(self).items()}


def paired_bootstrap(
    detections_a: Sequence[Mapping[str, Any]],
    detections_b: Sequence[Mapping[str, Any]],
    annotations: Mapping[str, VocAnnotation],
    classes: Sequence[str],
    *,
    resamples: int = 1000,
    seed: int = 0,
) -> BootstrapComparison:
    """Compare two detectors' detections on the same images by a paired bootstrap."""
    if resamples < 2:
        raise ValueError(f"expected at least 2 resamples, got {resamples}")
    a = detection_outcomes(detections_a, annotations, classes)
    b = detection_outcomes(detections_b, annotations, classes)
    n = len(annotations)
    ones = np.ones(n, np.int64)
    map_a, map_b = weighted_map(a, ones), weighted_map(b, ones)
    rng = np.random.default_rng(seed)
    diffs = np.empty(resamples)
    for r in range(resamples):
        weights = np.bincount(rng.integers(0, n, n), minlength=n)
        diffs[r] = weighted_map(b, weights) - weighted_map(a, weights)
    low, high = np.percentile(diffs, [2.5, 97.5])
    return BootstrapComparison(
        map_a=map_a,
        map_b=map_b,
        difference=map_b - map_a,
        sd=float(diffs.std(ddof=1)),
        low=float(low),
        high=float(high),
        b_better=float((diffs > 0).mean()),
        resamples=resamples,
        images=n,
        seed=seed,
    )
