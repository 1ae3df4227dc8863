"""``python -m app.service.serve``: uvicorn with a clean exit status on SIGTERM.

``uvicorn app.main:app`` shuts down gracefully on SIGTERM (stops accepting, lets in-flight
requests finish, runs the lifespan exit that drains the inference queue) and then re-raises
the signal, so the process ends "killed by SIGTERM" (status -15 / 143). Orchestrators and
``docker stop`` read that as a failure-free stop anyway, but a drained, finished shutdown is a
success: this entry point installs a SIGTERM handler that uvicorn restores before re-raising,
so the re-raised signal ends the process with status 0. SIGINT keeps its usual behaviour.

``--host``, ``--port`` and ``--workers`` default to the environment variables ``HOST``,
``PORT`` and ``WEB_CONCURRENCY`` (127.0.0.1, 8000, 1 when unset), so a container's exec-form
``CMD ["python", "-m", "app.service.serve"]`` follows them without a shell.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
from types import FrameType

import uvicorn

logger = logging.getLogger(__name__)


def _graceful_shutdown_done(signum: int, frame: FrameType | None) -> None:
    """SIGTERM after uvicorn's own graceful shutdown: nothing left to do, exit normally."""


def _env_int(name: str, default: int) -> int:
    """``int(os.environ[name])``, ``default`` when unset or empty.

    Raises:
        ValueError: the variable is set to something that is not an integer.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(
            f"{name}={raw!r} is not an integer; set it to a number or unset it"
        ) from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (host, port, workers, graceful-shutdown timeout); the defaults of
    the first three come from ``HOST``, ``PORT`` and ``WEB_CONCURRENCY``."""
    parser = argparse.ArgumentParser(description="Serve the SPP-net detection API.")
    try:
        default_port = _env_int("PORT", 8000)
        default_workers = _env_int("WEB_CONCURRENCY", 1)
    except ValueError as error:
        parser.error(str(error))
    parser.add_argument(
        "--host",
        default=os.environ.get("HOST", "").strip() or "127.0.0.1",
        help="interface to bind (default: HOST, else 127.0.0.1; now %(default)s)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=default_port,
        help="TCP port (default: PORT, else 8000; now %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=default_workers,
        help="server processes, each with its own model (default: WEB_CONCURRENCY, else 1; "
        "now %(default)s)",
    )
    parser.add_argument(
        "--graceful-timeout",
        type=float,
        default=30.0,
        help="seconds in-flight requests get to finish after SIGTERM (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"port {args.port} is out of range; use 0-65535")
    if args.workers < 1:
        parser.error(f"workers must be at least 1, not {args.workers}")
    return args


def main(argv: list[str] | None = None) -> None:
    """Run ``app.main:app`` under uvicorn until SIGTERM or SIGINT."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _graceful_shutdown_done)
    uvicorn.run(
        "app.main:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=False,  # the app logs one JSON line per request itself
        timeout_graceful_shutdown=args.graceful_timeout,
    )


if __name__ == "__main__":
    main()
