"""One case of the bad-input corpus (cluster.badinput.corpus) and the shorthands its tables use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["BadCase", "SlowUpload", "Method", "S", "JSON", "U400", "U401", "U403", "U404", "U405",
           "U408", "U409", "U413", "U415", "U422"]

Method = Literal["GET", "POST", "PUT", "DELETE", "PATCH", "WS"]


@dataclass(frozen=True)
class SlowUpload:
    """Send `parts` of a body that declares `declared` bytes, `interval_s` apart, then stall:
    the server must answer (or close) within `bound_s` of the first byte."""

    declared: int
    parts: tuple[bytes, ...]
    interval_s: float = 0.2
    bound_s: float = 8.0


@dataclass(frozen=True)
class BadCase:
    category: str
    route: str  # the route's template, the table's column
    method: Method
    path: str
    name: str
    expect: frozenset[int]  # HTTP statuses, or WebSocket close codes for method "WS"
    auth: str | None = "ingest"  # which key of the runner's keys; None sends no Authorization
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    ws_frames: tuple[str | bytes, ...] = ()
    ws_errors: frozenset[str] = frozenset()  # codes allowed in the stream's error frames
    ws_wait_s: float = 0.0  # read this long for a close the server must make by itself
    slow: SlowUpload | None = None  # sent over a raw socket, part by part, then stalled
    field: str | None = None  # some `details` entry must name this field

    @property
    def label(self) -> str:
        return f"{self.category}/{self.method} {self.route}/{self.name}"


S = "/v1/sessions/@session@"
JSON = (("Content-Type", "application/json"),)
U400, U401, U403, U404, U405, U408, U409, U413, U415, U422 = (
    frozenset({c}) for c in (400, 401, 403, 404, 405, 408, 409, 413, 415, 422))
