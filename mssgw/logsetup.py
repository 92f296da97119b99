"""Logging for the daemon: one line per event, text or JSON.

Messages never carry message content, passwords or tokens (SPEC TRACE-1);
modules log addresses, codes and reasons only.
"""

from __future__ import annotations

import json
import logging
import sys


class JsonFormatter(logging.Formatter):
    def __init__(self, process: str = "") -> None:
        super().__init__()
        #: Which process of the daemon logs ("supervisor", "worker 1/4"), if several.
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.process:
            data["process"] = self.process
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def setup(level: str = "info", fmt: str = "text", process: str = "") -> None:
    """Log to stderr; ``process`` names the daemon's process when it runs several
    (``gateway.workers``), so interleaved lines can be told apart."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(process))
    else:
        tag = f"[{process}] " if process else ""
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)s {tag}%(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Migrations announce every step at INFO; an operator only needs to hear of problems.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))
