"""Logging setup for the command line: readable text, or one JSON object per line."""

from __future__ import annotations

import logging
from typing import Literal

import orjson
import stamina.instrumentation
from stamina.instrumentation import RetryDetails

from tamma_sync.models import clip_error

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", "exception"?}` per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure_logging(log_format: Literal["text", "json"] = "text") -> None:
    # No format here shows the caller's file and line, nor the thread's or process's name:
    # they are not looked up for every record (the logging HOWTO's "Optimization"). With
    # `AccessLineFormatter`, an access line went from 145k to 64k instructions.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per ELSA request is noise
    stamina.instrumentation.set_on_retry_hooks([log_retry])


def log_retry(details: RetryDetails) -> None:
    """A retry as one line saying what failed and why. stamina's own line reads
    `stamina.retry_scheduled` and keeps the rest in fields a text log does not show, among
    them the call's arguments (which may hold secrets)."""
    cause = details.caused_by
    reason = clip_error((str(cause).strip().splitlines() or [""])[0])  # ELSA's answer: any size
    # A retrying block (not a function) is named `<context block>`: its error says it all.
    what = "" if details.name.startswith("<") else f" of {details.name}"
    logging.getLogger("stamina").warning(
        "retry %d%s in %.1f s: %s%s",
        details.retry_num,
        what,
        details.wait_for,
        type(cause).__name__,
        f": {reason}" if reason else "",
    )
