"""Structured logs: one JSON object per line, carrying the request id that caused the work.

Every tracemill process (ingress replicas, shards, processing tasks, the vision service, job
drivers, the CLI) calls `setup_logging(component)` once; our loggers (`actors`, `serve_app`,
`jobs`, `cluster`) then write JSON lines to stderr, which Ray collects per worker under its
session's `logs/` directory. The request id travels explicitly: the ingress reads it (or makes
one), passes it in every actor call and task, and each process binds it with `bound_request`,
so `grep <request id>` over the logs finds every line of one request across processes.

Messages carry ids, counts, stages and error types, never event values, keys or secrets: the
callers only log those, and the formatter drops exception text from third-party errors, whose
messages may quote a value (it keeps their type and traceback lines).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator

__all__ = ["JsonFormatter", "bound_request", "current_request_id", "setup_logging"]

_REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("tracemill_request_id", default=None)
_OUR_LOGGERS = ("actors", "serve_app", "jobs", "cluster")
_configured: str | None = None


def current_request_id() -> str | None:
    return _REQUEST_ID.get()


@contextlib.contextmanager
def bound_request(request_id: str | None) -> Iterator[None]:
    """Log lines written inside carry `request_id` (a None keeps whatever is bound already)."""
    if request_id is None:
        yield
        return
    token = _REQUEST_ID.set(request_id)
    try:
        yield
    finally:
        _REQUEST_ID.reset(token)


class JsonFormatter(logging.Formatter):
    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "component": self.component,
            "logger": record.name,
            "pid": record.process,
            "request_id": getattr(record, "request_id", None) or _REQUEST_ID.get(),
            "message": record.getMessage(),
        }
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = record.exc_info[0].__name__
        return json.dumps(entry, ensure_ascii=False, default=str)


def setup_logging(component: str, level: str = "INFO") -> None:
    """Idempotent per process: the first caller names the component (ingress, shard, task …)
    and sets the level (`settings.log_level`, passed in like every setting)."""
    global _configured
    if _configured is not None:
        return
    _configured = component
    # The process' real stderr: Serve replaces sys.stderr in replicas with a stream that
    # re-logs each line in its own format, which would wrap ours in a prefix.
    handler = logging.StreamHandler(sys.__stderr__ or sys.stderr)
    handler.setFormatter(JsonFormatter(component))
    for name in _OUR_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False  # one line per record, in our format, not twice
