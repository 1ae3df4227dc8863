"""``spp train classify|detect|all --config FILE``: the training pipeline of docs/training.md."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.cli.common import SubParsers, device_arg, fail, recorded_command, recorded_path


def add_parser(sub: SubParsers, store: str) -> None:
    """``spp train STAGE --config FILE [--work DIR] [--out DIR | --store DIR] [--device D]``."""
    p = sub.add_parser("train", help="train a model by the paper's multi-stage pipeline")
    p.add_argument(
        "stage",
        choices=("classify", "detect", "all"),
        help="classify: classification pre-training only; detect/all: every stage "
        "(pre-training resumes if done)",
    )
    p.add_argument(
        "--config", required=True, help="recipe YAML, e.g. app/training/configs/zf5-tiny.yaml"
    )
    p.add_argument("--work", help="work directory, resumable (default work_data/<recipe name>)")
    p.add_argument(
        "--out",
        help="model directory to write; its folder name is the model's name "
        "(default <store>/<recipe name>)",
    )
    p.add_argument(
        "--store",
        default=store,
        help=f"model store the model goes into when --out is not given (now {store})",
    )
    device_arg(p, default="cpu")
    p.set_defaults(func=run_train, extra="train")


def run_train(args: argparse.Namespace) -> int:
    """Run the pipeline; a recipe, work-directory, data or name problem exits with one line."""
    from app.data.voc import VocFormatError
    from app.model.store import ModelLoadError, validate_model_name
    from app.training.pipeline import Pipeline
    from app.training.recipe import RecipeError, load_recipe
    from app.training.workdir import StaleWorkError

    try:
        config = load_recipe(Path(args.config))
    except (RecipeError, OSError) as exc:
        fail(str(exc))
    out = Path(args.out or Path(args.store) / config.name)
    try:
        validate_model_name(out.name)
        work = Path(args.work or f"work_data/{config.name}")
        pipeline = Pipeline(config, work, device=args.device or "cpu")
        if args.stage == "classify":
            pipeline.run_pretrain()
            return 0
        if out.name != config.name:
            sys.stdout.write(f"the model is named {out.name!r} after its folder (the recipe "
                             f"says {config.name!r})\n")  # fmt: skip
        manifest = pipeline.run_detection(out, command=_train_command(args))
    except (ModelLoadError, StaleWorkError, VocFormatError) as exc:
        fail(str(exc))
    sys.stdout.write(
        f"wrote {out} (weights sha256 {manifest.weights_sha256}); "
        f"serve it with MODEL_STORE={out.parent} MODEL_NAME={manifest.name}\n"
    )
    return 0


def _train_command(args: argparse.Namespace) -> str:
    """The command line as given, with ``--config`` as :func:`recorded_path` writes it."""
    argv = list(args.command_argv)
    config = recorded_path(Path(args.config))
    for i, token in enumerate(argv):
        if token == "--config" and i + 1 < len(argv):
            argv[i + 1] = config
        elif token.startswith("--config="):
            argv[i] = f"--config={config}"
    return recorded_command(argv)
