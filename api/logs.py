"""JSON log lines: one per request on the `likes.access` logger, to stdout and,
when LOG_FILE is set, to that file (the runbook reads logs/app.log).
Client ids and IPs are never logged.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        cached = record.__dict__.get("_json_line")
        if cached is not None:          # stdout and the file share one rendering
            return cached
        line = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                + f".{int(record.msecs):03d}Z",
                "level": record.levelname.lower(), "logger": record.name}
        fields = getattr(record, "fields", None)
        if fields:
            line.update(fields)
        else:
            line["message"] = record.getMessage()
        if record.exc_info and record.levelno >= logging.ERROR:
            line["error"] = repr(record.exc_info[1])
            line["traceback"] = self.formatException(record.exc_info)
        record._json_line = json.dumps(line, separators=(",", ":"), default=str)
        return record._json_line


def configure(level: str, log_file: str | None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    formatter = JsonFormatter()
    for h in handlers:
        h.setFormatter(formatter)
    for name in ("likes", "sanic.root", "sanic.error", "sanic.server"):
        logger = logging.getLogger(name)
        logger.handlers = list(handlers)
        logger.setLevel(level)
        logger.propagate = False


def event(logger: logging.Logger, level: int, **fields) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, fields.get("event", ""), extra={"fields": fields})
