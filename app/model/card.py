"""Model cards: ``model_store/<name>/MODEL_CARD.md`` rendered from the model's manifest.

:func:`render_model_card` is a pure function of a :class:`~app.model.store.Manifest`: the
card says nothing the manifest does not hold (architecture, training provenance, recorded
metrics with the commands that produced them), plus the fixed text on intended use and limits.
``spp models card NAME`` writes it; ``spp models card NAME --check`` fails when the committed
card differs, so a card cannot drift from its manifest (``spp eval --record`` changes the
manifest's metrics: regenerate the card afterwards).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from app.model.config import ModelConfig, WindowConfig
from app.model.store import Manifest

CARD_FILE = "MODEL_CARD.md"
#: Buckets of the classification report's ``by_share`` (share of the image's shorter side).
_SHARE_BUCKETS: tuple[tuple[str, str], ...] = (
    ("0.0-0.1", "< 10 %"),
    ("0.1-0.2", "10-20 %"),
    ("0.2-0.4", "20-40 %"),
    (">=0.4", ">= 40 %"),
)


def render_model_card(manifest: Manifest) -> str:
    """The Markdown model card of ``manifest``; the same manifest always gives the same text.

    Args:
        manifest: a validated manifest (``read_manifest(model_dir)``).

    Returns:
        The card, ending in one newline.
    """
    sections = [
        _header(manifest),
        _classes(manifest),
        _architecture(manifest),
        _training(manifest.training),
        _metrics(manifest),
        _intended_use(manifest),
        _limits(manifest),
    ]
    return "\n\n".join(s.strip("\n") for s in sections) + "\n"


def _fmt(value: Any, digits: int = 3) -> str:
    """A metric value for a table: floats rounded, missing values as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _join(values: Iterable[Any]) -> str:
    return ", ".join(str(v) for v in values)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: int = 1) -> str:
    """A Markdown table; columns from index ``right`` on are right-aligned."""
    align = ["---" if i < right else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _is_shapes_model(manifest: Manifest) -> bool:
    """Whether the model was trained on the generated shapes dataset (from its provenance)."""
    data = manifest.training.get("data")
    recipe = manifest.training.get("recipe")
    generator = data.get("generator", "") if isinstance(data, Mapping) else ""
    kind = recipe.get("data", {}).get("kind") if isinstance(recipe, Mapping) else None
    return "shapes" in str(generator) or kind == "shapes"


def _header(manifest: Manifest) -> str:
    return (
        f"# Model card: {manifest.name} {manifest.version}\n\n"
        f"<!-- Generated from manifest.json by `spp models card {manifest.name}`. "
        "Edit the manifest (or re-run training / `spp eval --record`), then regenerate; "
        "tests/model/test_card.py fails when this file and the manifest disagree. -->\n\n"
        f"{manifest.description or '(no description in the manifest)'}"
    )


def _classes(manifest: Manifest) -> str:
    rows = [[str(i), name] for i, name in enumerate(manifest.classes)]
    return (
        f"## Classes\n\n{len(manifest.classes)} object classes, by class id (the `class_id` "
        "of `/detect` and `/classify` answers). Everything else is background.\n\n"
        + _table(["class_id", "label"], rows, right=2)
    )


def _trunk_text(manifest: Manifest) -> str:
    m = manifest.model
    default = ModelConfig(num_classes=m.num_classes)
    size = f"ZF-5 at width {m.width:g}" if m.channels is None else "ZF-5"
    text = (
        f"{size}: conv1-conv5 with {_join(m.conv_channels)} channels, "
        f"within-channel LRN (size {m.lrn_size}, alpha {m.lrn_alpha:g}, "
        f"beta {m.lrn_beta:g}), total stride 16"
    )
    if (m.conv_pads, m.pool_pad, m.pool_ceil_mode) != (
        default.conv_pads,
        default.pool_pad,
        default.pool_ceil_mode,
    ):
        rounding = "up" if m.pool_ceil_mode else "down"
        text += (
            f"; conv pads {_join(m.conv_pads)}, 3 x 3 / 2 max pools with padding {m.pool_pad} "
            f"rounding their size {rounding}"
        )
    return text


def _detection_text(manifest: Manifest) -> str:
    det = manifest.detection
    nms = f"NMS IoU {det.nms_iou:g}" + (" with +1 areas" if det.nms_extent == "inclusive" else "")
    threshold = (
        "no SVM score threshold"
        if det.min_score is None
        else f"SVM scores below {det.min_score:g} dropped"
    )
    return (
        f"single scale {det.single_scale}; multi-scale {_join(det.multi_scales)}; longer "
        f"side capped at {det.max_long_side}; {nms}; at most "
        f"{det.max_per_class} per class; {threshold}"
    )


def _windows_text(windows: WindowConfig) -> str:
    extent = "+1 " if windows.area_extent == "inclusive" else ""
    rule = (
        f"the scale nearest round({windows.target_side:g} * shorter side / sqrt({extent}area)), "
        "first listed on ties"
        if windows.scale_choice == "expected_scale"
        else f"the scale whose {extent}window area is nearest {windows.target_side:g}^2"
    )
    scaling = "scaled by (s - 1) / (m - 1)" if windows.box_scaling == "align_corners" else "scaled"
    projection = (
        f"projected with offset0 {windows.offset0:g}, offset {windows.offset:g}, step "
        f"{windows.stride:g} (spm_pool_caffe_mex.cpp)"
        if windows.projection == "offset"
        else f"projected with stride {windows.stride:g} (paper appendix)"
    )
    return f"each window takes {rule}; {scaling} and {projection}"


def _architecture(manifest: Manifest) -> str:
    m, pre, prop = manifest.model, manifest.preprocess, manifest.proposals
    k = m.num_classes
    fc8 = f"{k} classes + background" if m.cls_background else f"{k} classes"
    heads = (
        f"fc8 ({fc8}) for whole-image classification; {k} linear SVMs and {k} box "
        "regressors for detection"
        if m.classifier
        else f"no whole-image classification head; {k} linear SVMs and {k} box regressors "
        "for detection"
    )
    rows = [
        ["trunk", _trunk_text(manifest)],
        [
            "pyramid pooling",
            f"levels {_join(m.levels)} ({m.bins} bins) -> {m.spp_dim}-d vector per window",
        ],
        [
            "fc6 / fc7",
            f"{m.fc_dim} units each, dropout {m.dropout:g} in training"
            if m.fc7_dim is None
            else f"{m.fc_dim} and {m.fc7_dim} units, dropout {m.dropout:g} in training",
        ],
        ["heads", heads],
        [
            "input",
            f"{pre.channel_order}, mean {_join(f'{v:g}' for v in pre.pixel_mean)} subtracted",
        ],
        ["detection", _detection_text(manifest)],
    ]
    if manifest.windows != WindowConfig():
        rows.append(["windows", _windows_text(manifest.windows)])
    rows += [
        [
            "proposals",
            f"selective search (fast) at longest side {prop.max_side or 'full'}, at most "
            f"{prop.max_proposals}, boxes under {prop.min_size:g} px dropped",
        ],
        [
            "classification",
            f"full view at shorter side {pre.classify_size}; multi-view at "
            f"{_join(pre.view_scales)} with {pre.view_size}-px views"
            if m.classifier
            else "by detection only (`views=detect`)",
        ],
        [
            "weights",
            f"`{manifest.weights_file}`, {manifest.weights_dtype}, "
            f"SHA-256 `{manifest.weights_sha256}`",
        ],
    ]
    return "## Architecture\n\n" + _table(["part", "setting"], rows, right=2)


#: Recipe ``data`` fields that only the shapes generator reads (left out of a VOC model's card).
_GENERATOR_FIELDS = frozenset(
    {"seed", "train", "val", "pretrain_extra", "detect_extra", "knobs", "extra_knobs"}
)
#: Seeds of the generated data (not drawn from when the data was read from a VOC folder).
_GENERATOR_SEEDS = frozenset({"data", "pretrain_data"})


def _voc_root(training: Mapping[str, Any]) -> str | None:
    """The VOC-layout folder the model was trained on, or None (generated data, or unknown)."""
    recipe = training.get("recipe")
    data = recipe.get("data") if isinstance(recipe, Mapping) else None
    if isinstance(data, Mapping) and data.get("kind") == "voc":
        return str(data.get("root"))
    return None


def _training(training: Mapping[str, Any]) -> str:
    if not training:
        return "## Training\n\nThe manifest records no training provenance."
    parts = ["## Training"]
    if "command" in training:
        parts.append(f"Written by this command:\n\n```bash\n{training['command']}\n```")
    facts = []
    if "finished" in training:
        facts.append(f"finished {training['finished']}")
    if "torch" in training:
        facts.append(f"torch {training['torch']}")
    seeds = training.get("seeds")
    if isinstance(seeds, Mapping) and _voc_root(training) is not None:
        seeds = {k: v for k, v in seeds.items() if k not in _GENERATOR_SEEDS}
    if isinstance(seeds, Mapping) and seeds:
        facts.append("seeds: " + ", ".join(f"{k} {v}" for k, v in seeds.items()))
    if facts:
        sentence = "; ".join(facts)
        parts.append(sentence[0].upper() + sentence[1:] + ".")
    data = training.get("data")
    recipe = training.get("recipe")
    if isinstance(data, Mapping):
        parts.append(_training_data(data) + _extra_images(recipe, seeds))
    if isinstance(recipe, Mapping):
        parts.append(_recipe(recipe, voc=_voc_root(training) is not None))
    return "\n\n".join(parts)


def _extra_images(recipe: Any, seeds: Any) -> str:
    """The sentence on stage 1's extra generated images, when the recipe asked for some."""
    data = recipe.get("data") if isinstance(recipe, Mapping) else None
    extra = data.get("pretrain_extra", 0) if isinstance(data, Mapping) else 0
    if not extra or not isinstance(data, Mapping) or data.get("kind") == "voc":
        return ""
    seed = seeds.get("pretrain_data", "?") if isinstance(seeds, Mapping) else "?"
    detect = data.get("detect_extra", 0) if isinstance(data, Mapping) else 0
    also = f", the first {detect} of which also train stages 3-5" if detect else ""
    return (
        f"\n\nStage 1 (classification pre-training) also saw {extra} more generated images "
        f"(seed {seed}){also}."
    )


def _recipe(recipe: Mapping[str, Any], *, voc: bool = False) -> str:
    """The recorded recipe as a table of sections (name, version, description are above);
    ``voc``: without the data fields that only the shapes generator reads."""
    rows = []
    for section, value in recipe.items():
        if section in ("name", "version", "description"):
            continue
        if voc and section == "data" and isinstance(value, Mapping):
            value = {k: v for k, v in value.items() if k not in _GENERATOR_FIELDS}
        if isinstance(value, Mapping):
            value = ", ".join(f"{k}: {_plain(v)}" for k, v in value.items())
        rows.append([f"`{section}`", _plain(value)])
    return "### Recipe (as recorded)\n\n" + _table(["section", "settings"], rows, right=2)


def _plain(value: Any) -> str:
    """A recipe value as written in YAML: lists in brackets, None as null."""
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_plain(v) for v in value) + "]"
    return str(value)


def _training_data(data: Mapping[str, Any]) -> str:
    """The training-data paragraph: generator or root, images and objects per split, hash."""
    lines = ["### Training data", ""]
    if "generator" in data:
        lines.append(
            f"Generated by `{data['generator']}` (version {data.get('generator_version', '?')}, "
            f"seed {data.get('seed', '?')}, OpenCV {data.get('opencv', '?')})."
        )
    elif "root" in data:
        lines.append(f"Read from the VOC-layout dataset at `{data['root']}`.")
    images = data.get("images")
    if isinstance(images, Mapping):
        used = [f"{n} {split}" for split, n in images.items() if n]
        lines.append(f"Images: {', '.join(used) or 'none recorded'}.")
    objects = data.get("objects")
    if isinstance(objects, Mapping):
        splits = [
            s
            for s, counts in objects.items()
            if isinstance(counts, Mapping) and any(counts.values())
        ]
        if splits:
            names = list(objects[splits[0]])
            rows = [[name, *(str(objects[s].get(name, 0)) for s in splits)] for name in names]
            lines += ["", "Objects per class:", "", _table(["class", *splits], rows)]
    backgrounds = data.get("backgrounds")
    if isinstance(backgrounds, Sequence) and backgrounds:
        lines += ["", f"Background photographs: {_join(backgrounds)}."]
    digest = data.get("sha256") or data.get("annotations_sha256")
    if digest:
        lines += ["", f"Data SHA-256: `{digest}`."]
    return "\n".join(lines)


def _metrics(manifest: Manifest) -> str:
    metrics = manifest.metrics
    if not metrics:
        return (
            "## Metrics\n\nNone recorded. `spp eval ... --record` stores a split's figures "
            "in the manifest; then regenerate this card."
        )
    detection = {k: v for k, v in metrics.items() if isinstance(v, Mapping) and "map" in v}
    classify = {k: v for k, v in metrics.items() if isinstance(v, Mapping) and "accuracy" in v}
    other = {k: v for k, v in metrics.items() if k not in detection and k not in classify}
    parts = ["## Metrics\n\n" + _metrics_source(manifest)]
    if detection:
        parts.append(_detection_metrics(detection, manifest.classes))
    if classify:
        parts.append(_classification_metrics(classify, manifest.classes))
    if other:
        text = json.dumps(other, indent=2, default=str)
        parts.append(f"### Other recorded metrics\n\n```json\n{text}\n```")
    return "\n\n".join(parts)


def _metrics_source(manifest: Manifest) -> str:
    """Where the recorded figures come from, without claiming more than the manifest knows."""
    root = _voc_root(manifest.training)
    if root is None:
        return (
            "Each figure was written into the manifest by the `spp eval ... --record` "
            "command listed under its table (the `--voc-root` named there is a dataset the model "
            "did not train on; how it was made is in the project's docs/training.md)."
        )
    recipe = manifest.training.get("recipe", {})
    data = recipe.get("data", {}) if isinstance(recipe, Mapping) else {}
    train = data.get("train_split", "train") if isinstance(data, Mapping) else "train"
    return (
        "Each figure was written into the manifest by the `spp eval ... --record` command "
        f"listed under its table. The model trained on the `{train}` split of `{root}`; a "
        "command reading another split of that folder scored images the model did not train "
        "on, but from the same source as its training images."
    )


def _commands(entries: Mapping[str, Mapping[str, Any]]) -> str:
    lines = ["Commands:", ""]
    for key, entry in entries.items():
        command = entry.get("command")
        lines.append(f"- `{key}`: " + (f"`{command}`" if command else "(no command recorded)"))
    return "\n".join(lines)


def _detection_metrics(entries: Mapping[str, Mapping[str, Any]], classes: Sequence[str]) -> str:
    rows = []
    for key, entry in entries.items():
        recall = entry.get("proposal_recall") or {}
        rows.append(
            [
                f"`{key}`",
                _fmt(entry.get("scales")),
                _fmt(entry.get("images")),
                f"**{_fmt(entry.get('map'))}**",
                _fmt(recall.get("0.5")),
                _fmt(recall.get("0.7")),
            ]
        )
    summary = _table(
        ["metric", "scales", "images", "mAP", "proposal recall @0.5", "@0.7"], rows, right=2
    )
    per_class = _table(
        ["class", *(f"`{key}`" for key in entries)],
        [[name, *(_fmt(e.get("ap", {}).get(name)) for e in entries.values())] for name in classes],
    )
    return (
        "### Detection: VOC 2007 11-point AP\n\n"
        f"{summary}\n\nAP per class:\n\n{per_class}\n\n{_commands(entries)}"
    )


def _classification_metrics(
    entries: Mapping[str, Mapping[str, Any]], classes: Sequence[str]
) -> str:
    rows = []
    for key, entry in entries.items():
        shares = entry.get("by_share") or {}
        rows.append(
            [
                f"`{key}`",
                _fmt(entry.get("images")),
                f"**{_fmt(entry.get('accuracy'))}**",
                *(_fmt((shares.get(bucket) or {}).get("accuracy")) for bucket, _ in _SHARE_BUCKETS),
            ]
        )
    header = ["metric", "images", "top-1", *(f"shape {label}" for _, label in _SHARE_BUCKETS)]
    per_class = _table(
        ["class", *(f"`{key}`" for key in entries)],
        [
            [name, *(_fmt(e.get("per_class", {}).get(name)) for e in entries.values())]
            for name in classes
        ],
    )
    return (
        "### Whole-image classification: top-1 accuracy on the one-object images\n\n"
        "The *shape* columns split the images by the object's size as a share of the image's "
        f"shorter side.\n\n{_table(header, rows)}\n\nAccuracy per class:\n\n{per_class}\n\n"
        f"{_commands(entries)}"
    )


def _intended_use(manifest: Manifest) -> str:
    if _is_shapes_model(manifest):
        return (
            "## Intended use\n\n"
            "A working default for the SPP-net service and its tests: it finds the "
            f"{len(manifest.classes)} generated shape classes above in images made by the "
            "project's shapes generator (`spp data shapes`), so that the whole pipeline "
            "(selective search, pyramid pooling, SVMs, box regression, calibration) can be "
            "run, measured and benchmarked on a machine without VOC data or pretrained "
            "weights. It is also the reference a new training recipe is compared with."
        )
    return (
        "## Intended use\n\n"
        f"Detecting the {len(manifest.classes)} classes above in images like those it was "
        "trained on (see Training data)."
    )


def _limits(manifest: Manifest) -> str:
    lines = ["## Limits", ""]
    if _is_shapes_model(manifest):
        lines += [
            "- It knows generated shapes only. It has never seen a Pascal VOC object (or any "
            "natural object); on a photograph its detections mean nothing, and any box it "
            "returns there is a false positive.",
            "- Its metrics hold for the generated datasets their commands read: they say how "
            "well it learned the generator, not how it would do on any other kind of image.",
        ]
    else:
        lines.append(
            "- It knows the classes above only; its metrics hold for the datasets their "
            "commands name and nowhere else."
        )
    if manifest.detection.calibration == "none":
        lines.append(
            "- No calibration was fitted: `confidence` is `sigmoid(score)` of the raw SVM "
            "score, 0.5 at score 0 (the SVM's decision boundary); it orders detections like "
            "the score but is not a probability."
        )
    else:
        lines.append(
            "- `confidence` is the SVM score mapped to a probability by a sigmoid fitted on the "
            "training data's val split; on images unlike those it is not a calibrated "
            "probability."
        )
    if manifest.model.classifier:
        lines.append(
            "- Whole-image classification reads fc8 of the classification pre-training; "
            "`views=detect` (the class of the most confident detection) is the accurate mode on "
            "one-object images; `views=full` is weak when the object is small."
        )
    else:
        lines.append(
            "- There is no whole-image classification head: `/classify` works with "
            "`views=detect` only."
        )
    if manifest.model.channels is None:
        lines.append(
            f"- The network is ZF-5 at width {manifest.model.width:g} with fc "
            f"{manifest.model.fc_dim} (the paper's is width 1, fc 4096), sized to train on a CPU."
        )
    return "\n".join(lines)
