"""JSON log lines: one object per line, with the fields a log pipeline can index.

``configure_logging`` installs one stderr handler on the ``app`` logger (replacing the one a
previous call installed, so building several apps in one process does not duplicate lines).
Structured fields go in ``extra={"fields": {...}}``. No header is ever logged, so the API key
cannot leak through the request log.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any

_HANDLER_NAME = "spp-json"


class JsonFormatter(logging.Formatter):
    """Formats a record as ``{"ts", "level", "logger", "message", **fields}``."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, tz=dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            payload.update(fields)
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str, ensure_ascii=False)


def configure_logging(level: str) -> None:
    """Send the ``app`` loggers' records to stderr as JSON lines at ``level``."""
    logger = logging.getLogger("app")
    for handler in list(logger.handlers):
        if handler.get_name() == _HANDLER_NAME:
            logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
