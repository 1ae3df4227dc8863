"""What several ``spp`` commands share: the parser type, the model store default, the options
of the inference commands, one-line failures, and the recorded command line."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TypeAlias, get_args

if TYPE_CHECKING:
    import numpy as np

    from app.inference.detector import Detector
    from app.model.store import SppModel

#: The ``add_subparsers()`` object every command module's ``add_parser`` adds its command to.
SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
#: Repository root: ``--config`` files inside it are recorded relative to it.
REPO_ROOT = Path(__file__).resolve().parents[2]


def fail(message: str) -> NoReturn:
    """Exit with ``spp: message`` on stderr (status 1), no traceback."""
    raise SystemExit(f"spp: {message}")


def write_or_check(path: Path, text: str, *, check: bool, fix: str) -> int:
    """Write the generated ``text`` to ``path``, or with ``check`` only compare: 1 (and the
    command ``fix`` that updates it) when ``path`` is missing or differs, else 0."""
    if check:
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current != text:
            state = "missing" if current is None else "out of date"
            sys.stderr.write(f"spp: {path} is {state}; run `{fix}`\n")
            return 1
        sys.stdout.write(f"{path} is up to date\n")
        return 0
    path.write_text(text, encoding="utf-8")
    sys.stdout.write(f"wrote {path}\n")
    return 0


def package_version() -> str:
    """The installed ``spp-service`` package's version (pyproject.toml's, written once), or
    ``unknown`` when the code runs from a checkout that was never installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("spp-service")
    except PackageNotFoundError:
        return "unknown"


def default_store() -> str:
    """The model store directory: ``MODEL_STORE`` from the environment (or ``.env``), else the
    repository's ``model_store/``; the service reads the same setting (``StoreSettings``)."""
    from app.service.settings import StoreSettings

    return str(StoreSettings().model_store)


def recorded_command(argv: Sequence[str]) -> str:
    """The command line a model or report records: ``spp`` and ``argv``, shell-quoted."""
    return shlex.join(["spp", *argv])


def recorded_path(path: Path) -> str:
    """``path`` as provenance records it: relative to the repository when inside it (so the
    record does not depend on where the repository was checked out), else absolute."""
    resolved = path.resolve()
    if resolved.is_relative_to(REPO_ROOT):
        return str(resolved.relative_to(REPO_ROOT))
    return str(resolved)


def store_arg(p: argparse.ArgumentParser, store: str) -> None:
    """``--store DIR`` with the store setting as default."""
    p.add_argument(
        "--store",
        default=store,
        help=f"model store directory (default: MODEL_STORE, else model_store/; now {store})",
    )


def device_arg(p: argparse.ArgumentParser, default: str = "cuda when present, else cpu") -> None:
    """``--device``: where the network runs."""
    p.add_argument(
        "--device", default=None, help=f"torch device: cpu, cuda, cuda:1 (default: {default})"
    )


def model_args(p: argparse.ArgumentParser, store: str) -> None:
    """``--model``, ``--store``, ``--device`` and ``--precision`` of the inference commands."""
    from app.model.store import DEFAULT_MODEL_NAME

    p.add_argument(
        "--model",
        default=DEFAULT_MODEL_NAME,
        help=f"model name: its folder in the store, as `spp models` lists it (default: "
        f"{DEFAULT_MODEL_NAME})",
    )
    store_arg(p, store)
    device_arg(p)
    precision_arg(p)


def precision_arg(p: argparse.ArgumentParser) -> None:
    """``--precision``, one of :data:`app.inference.features.Precision`."""
    from app.inference.features import Precision

    p.add_argument(
        "--precision",
        choices=get_args(Precision),
        default="float32",
        help="convolutions and fc6/fc7 in this type (float16: CUDA only)",
    )


def scales_arg(p: argparse.ArgumentParser) -> None:
    """``--scales``, one of :data:`app.inference.results.ScaleMode`."""
    from app.inference.results import ScaleMode

    p.add_argument(
        "--scales",
        choices=get_args(ScaleMode),
        default="single",
        help="single: the model's single scale; multi: its scale set, each window at one",
    )


def views_arg(p: argparse.ArgumentParser) -> None:
    """``--views``, one of :data:`app.inference.results.ViewMode`."""
    from app.inference.results import ViewMode

    p.add_argument(
        "--views",
        choices=get_args(ViewMode),
        default="full",
        help="classification: the whole image as one view (paper's full-image SPP), the "
        "multi-view test on conv5 at six scales, or the class of the most confident detection",
    )


def json_arg(p: argparse.ArgumentParser) -> None:
    """``--json``: machine-readable output."""
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def load_detector(args: argparse.Namespace) -> Detector:
    """The detector of ``--model`` in ``--store`` on ``--device`` at ``--precision``; exits with
    the reason (and what to do) when the model cannot be loaded."""
    from app.inference.detector import Detector

    return Detector(load_stored_model(args.store, args.model), args.device, args.precision)


def load_stored_model(store: str, name: str) -> SppModel:
    """``load_model(store, name)``, or exit with one line naming the store's models."""
    from app.model.store import ModelLoadError, load_model

    try:
        return load_model(Path(store), name)
    except ModelLoadError as exc:
        fail(f"{exc}; {_known_models(store)}")


def _known_models(store: str) -> str:
    """What to do when a model is missing: the store's models, or how to make one."""
    from app.model.store import list_model_names

    names = list_model_names(Path(store))
    if not names:
        return f"the store {store} holds no model (train one with `spp train`, or pass --store)"
    return f"models in {store}: {', '.join(names)} (pass one with --model)"


def read_image(path: str) -> np.ndarray:
    """The RGB image at ``path`` (``[H, W, 3]`` uint8); exits with the reason when unreadable."""
    from app.imaging import ImageError, decode_image

    try:
        return decode_image(Path(path).read_bytes(), max_pixels=200_000_000)
    except (OSError, ImageError) as exc:
        fail(f"{path}: {getattr(exc, 'message', exc)}")
