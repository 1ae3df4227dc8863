"""``python -m app.service.serve``: uvicorn with a clean exit status on SIGTERM.

``uvicorn app.main:app`` shuts down gracefully on SIGTERM (stops accepting, lets in-flight
requests finish, runs the lifespan exit that drains the inference queue) and then re-raises
the signal, so the process ends "killed by SIGTERM" (status -15 / 143). Orchestrators and
``docker stop`` read that as a failure-free stop anyway, but a drained, finished shutdown is a
success: this entry point installs a SIGTERM handler that uvicorn restores before re-raising,
so the re-raised signal ends the process with status 0. SIGINT keeps its usual behaviour.
"""

from __future__ import annotations

import argparse
import logging
import signal
from types import FrameType

import uvicorn

logger = logging.getLogger(__name__)


def _graceful_shutdown_done(signum: int, frame: FrameType | None) -> None:
    """SIGTERM after uvicorn's own graceful shutdown: nothing left to do, exit normally."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (host, port, graceful-shutdown timeout)."""
    parser = argparse.ArgumentParser(description="Serve the SPP-net detection API.")
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default: %(default)s)"
    )
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default: %(default)s)")
    parser.add_argument(
        "--graceful-timeout",
        type=float,
        default=30.0,
        help="seconds in-flight requests get to finish after SIGTERM (default: %(default)s)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run ``app.main:app`` under uvicorn until SIGTERM or SIGINT."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _graceful_shutdown_done)
    uvicorn.run(
        "app.main:app",
        host=args.host,
        port=args.port,
        access_log=False,  # the app logs one JSON line per request itself
        timeout_graceful_shutdown=args.graceful_timeout,
    )


if __name__ == "__main__":
    main()
