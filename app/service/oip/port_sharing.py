"""Who may share the gRPC port: the workers of one server, never two servers.

uvicorn's ``--workers N`` (and ``WEB_CONCURRENCY``) forks N worker processes that share the
HTTP socket their supervisor opened; each worker runs the app's lifespan and starts its own
gRPC server, so the gRPC port must be shared too: with ``SO_REUSEPORT`` the kernel spreads the
connections over the workers. But ``SO_REUSEPORT`` would also let a *second* server on the
same port bind and silently take part of the first one's calls, so it is set only among
siblings, told apart by a claim file:

- ``<tempdir>/spp-service-grpc-<host>-<port>.owner``, locked with ``flock`` while a worker
  binds, holds the *group* that owns the port: the supervisor's PID for a uvicorn worker
  (a process started by ``multiprocessing``), the process's own PID otherwise;
- a worker whose group owns the port (or whose claim is stale: its owner is gone) binds with
  ``SO_REUSEPORT`` and writes its group; any other binds without it, which fails on a taken
  port with the message of :class:`GrpcPortTaken`;
- within one process, a port is bound once (a second app in the same process is refused).
"""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

#: ``(host, port)`` bound by a gRPC server of this process.
_BOUND_HERE: set[tuple[str, int]] = set()


class GrpcPortTaken(RuntimeError):
    """The gRPC port is held by another server (or program)."""

    def __init__(self, address: str) -> None:
        super().__init__(
            f"Failed to bind the gRPC server to {address}: the port is taken (another instance "
            "of the service, or another program). Set GRPC_PORT to a free port, or GRPC_PORT=0 "
            "to turn the gRPC server off."
        )


def port_group() -> int:
    """The PID naming this process's group of sibling workers."""
    return os.getppid() if multiprocessing.parent_process() is not None else os.getpid()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim_path(host: str, port: int) -> Path:
    """The claim file of ``host:port``."""
    safe_host = re.sub(r"[^A-Za-z0-9.]", "_", host)
    return Path(tempfile.gettempdir()) / f"spp-service-grpc-{safe_host}-{port}.owner"


@contextlib.contextmanager
def port_claim(host: str, port: int) -> Iterator[bool]:
    """Held around binding ``host:port``; yields whether to bind with ``SO_REUSEPORT``, and
    records this process's group as the owner when the block succeeds with it."""
    if (host, port) in _BOUND_HERE:
        yield False
        return
    me = port_group()
    with open(claim_path(host, port), "a+", encoding="ascii") as claim:
        fcntl.flock(claim, fcntl.LOCK_EX)
        claim.seek(0)
        text = claim.read().strip()
        owner = int(text) if text.isdigit() else None
        share = owner is None or owner == me or not _alive(owner)
        yield share
        _BOUND_HERE.add((host, port))
        if share and owner != me:
            claim.seek(0)
            claim.truncate()
            claim.write(f"{me}\n")
            claim.flush()


def release_port(host: str, port: int) -> None:
    """Forget that this process binds ``host:port`` (its server stopped)."""
    _BOUND_HERE.discard((host, port))
