"""Cluster-wide tracemill metrics, through `ray.util.metrics` (DESIGN.md decision 8).

Ray worker processes come and go, so each records into its node's Ray metrics agent, which
serves Prometheus. Every metric is defined here and recorded through the typed helpers below.
Exported names (checked on Ray 2.60): Ray prefixes custom metrics with ``ray_``; a counter
named ``..._total`` keeps that single suffix; a histogram exports ``_bucket``/``_sum``/``_count``.

| metric (ours)                    | type      | tags        | exported as                                            |
| -------------------------------- | --------- | ----------- | ------------------------------------------------------ |
| tracemill_events_received_total  | counter   | transport   | ray_tracemill_events_received_total                    |
| tracemill_events_acked_total     | counter   | transport   | ray_tracemill_events_acked_total                       |
| tracemill_events_rejected_total  | counter   | reason      | ray_tracemill_events_rejected_total                    |
| tracemill_ack_latency_seconds    | histogram | transport   | ray_tracemill_ack_latency_seconds_bucket/_sum/_count   |
| tracemill_open_streams           | gauge     | —           | ray_tracemill_open_streams                             |
| tracemill_shard_inflight_events  | gauge     | shard       | ray_tracemill_shard_inflight_events                    |
| tracemill_shard_slow_downs_total | counter   | shard       | ray_tracemill_shard_slow_downs_total                   |
| tracemill_task_duration_seconds  | histogram | kind        | ray_tracemill_task_duration_seconds_bucket/_sum/_count |
| tracemill_task_failures_total    | counter   | kind        | ray_tracemill_task_failures_total                      |
| tracemill_vision_calls_total     | counter   | outcome     | ray_tracemill_vision_calls_total                       |
| tracemill_vision_tokens_total    | counter   | direction   | ray_tracemill_vision_tokens_total                      |
| tracemill_vision_cost_usd_total  | counter   | —           | ray_tracemill_vision_cost_usd_total                    |
| tracemill_vision_breaker_open    | gauge     | —           | ray_tracemill_vision_breaker_open                      |
| tracemill_finalizations_total    | counter   | result      | ray_tracemill_finalizations_total                      |
| tracemill_finalizations_running  | gauge     | —           | ray_tracemill_finalizations_running                    |
| tracemill_jobs                   | gauge     | kind, state | ray_tracemill_jobs                                     |
| tracemill_model_backlog          | gauge     | kind        | ray_tracemill_model_backlog                            |
| tracemill_model_calls_total      | counter   | kind, mode  | ray_tracemill_model_calls_total                        |
| tracemill_model_cost_usd_total   | counter   | kind        | ray_tracemill_model_cost_usd_total                     |
| tracemill_model_inflight         | gauge     | kind        | ray_tracemill_model_inflight                           |
| tracemill_model_tokens_total     | counter   | kind, direction | ray_tracemill_model_tokens_total                   |

Ray adds ``Component``, ``NodeAddress``, ``SessionName``, ``Version`` and ``WorkerId`` to every
series, which tells processes apart (aggregate gauges with sum/max); a dead process' gauges age
out after ~2 report intervals. No tag carries a session id: tag values outside a fixed set are
recorded as ``"other"``. Without Ray (unit tests, scripts) every helper is a cheap no-op;
`use_backend` injects another implementation of Ray's metric API (an in-memory fake in tests).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import ray

__all__ = [
    "EXPORT_PREFIX", "METRICS", "MetricSpec", "MetricsAPI", "exported_series", "normalise",
    "record_ack", "record_events_received", "record_finalization", "record_rejected",
    "record_slow_down", "record_vision", "set_breaker_open", "set_finalizations_running",
    "set_jobs", "set_open_streams", "set_shard_inflight", "time_task", "use_backend",
    "model_inflight", "record_model_calls", "record_model_cost", "set_model_backlog",
]

log = logging.getLogger(__name__)

EXPORT_PREFIX = "ray_"
OTHER = "other"
MAX_SHARD_LABELS = 1024  # ShardSettings.count is at most 1024
SERVER_FAULT_REASONS = frozenset({"overloaded", "dependency_unavailable", "internal_error",
                                  "encryption_error", "decryption_failed", "data_key_unavailable"})  # issue 18.5

# Allowed values per tag key; anything else is recorded as "other".
ALLOWED: dict[str, frozenset[str]] = {
    "transport": frozenset({"http", "ws"}),
    "reason": SERVER_FAULT_REASONS | frozenset({
        # client-caused: the codes of actors.errors and the ingress, plus per-instance codes
        "malformed_json", "invalid_input", "invalid_events", "payload_too_large",
        "unsupported_media_type", "unauthenticated", "forbidden", "not_found", "conflict",
        "session_closed", "session_conflict", "session_id_taken", "screenshot_conflict",
        "bad_request", "method_not_allowed", "http_error", "config_error", "migration_failed",
        "request_timeout", "not_ready", "screenshot_not_ready", "screenshot_failed", "cors_denied",
        "rate_limited", "quota_exceeded",
        "consent_required", "notice_changed",  # issue 18.1
    }),
    "kind": frozenset({"compress", "redact", "vision", "score", "cards", "archive"}),
    "outcome": frozenset({"ok", "cached", "fallback"}),
    "direction": frozenset({"in", "out"}),
    "result": frozenset({"ready", "rejected", "failed"}),
    "job_kind": frozenset({"dataset", "finetune"}),  # the `kind` tag of tracemill_jobs
    "state": frozenset({"queued", "running", "succeeded", "failed"}),
    "model_kind": frozenset({"moderation", "vision", "card", "sentiment"}),  # the `kind` tag of tracemill_model_*
    "mode": frozenset({"sync", "batch"}),
}

_ACK_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_TASK_BOUNDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    type: Literal["counter", "gauge", "histogram"]
    description: str
    tag_keys: tuple[str, ...] = ()
    boundaries: tuple[float, ...] = ()


METRICS: dict[str, MetricSpec] = {s.name: s for s in (
    MetricSpec("tracemill_events_received_total", "counter", "Events in parsed, authenticated frames/requests",
               ("transport",)),
    MetricSpec("tracemill_events_acked_total", "counter", "Events acked (stored now or before)", ("transport",)),
    MetricSpec("tracemill_events_rejected_total", "counter", "Events refused, by error code", ("reason",)),
    MetricSpec("tracemill_ack_latency_seconds", "histogram", "From a frame or request read to its ack",
               ("transport",), _ACK_BOUNDS),
    MetricSpec("tracemill_open_streams", "gauge", "Open WebSocket streams of this replica"),
    MetricSpec("tracemill_shard_inflight_events", "gauge", "Events queued in a shard, uncommitted", ("shard",)),
    MetricSpec("tracemill_shard_slow_downs_total", "counter", "Batches a shard shed as Overloaded", ("shard",)),
    MetricSpec("tracemill_task_duration_seconds", "histogram", "Processing task wall time, failures included",
               ("kind",), _TASK_BOUNDS),
    MetricSpec("tracemill_task_failures_total", "counter", "Processing task attempts that raised", ("kind",)),
    MetricSpec("tracemill_vision_calls_total", "counter", "Vision analyses, by outcome", ("outcome",)),
    MetricSpec("tracemill_vision_tokens_total", "counter", "Vision provider tokens", ("direction",)),
    MetricSpec("tracemill_vision_cost_usd_total", "counter", "Estimated vision provider cost, USD"),
    MetricSpec("tracemill_vision_breaker_open", "gauge", "1 while this process' vision breaker is open"),
    MetricSpec("tracemill_finalizations_total", "counter", "Finished finalisations, by result", ("result",)),
    MetricSpec("tracemill_finalizations_running", "gauge", "Finalisations running in this process"),
    MetricSpec("tracemill_jobs", "gauge", "tracemill Ray jobs by kind and state", ("kind", "state")),
    MetricSpec("tracemill_model_backlog", "gauge", "Model calls waiting in this process (texts to score, "
               "lines of unfinished batches), by kind", ("kind",)),
    MetricSpec("tracemill_model_calls_total", "counter", "Model requests: one per synchronous call, one per "
               "batch line", ("kind", "mode")),
    MetricSpec("tracemill_model_cost_usd_total", "counter", "Estimated model cost, USD, by kind", ("kind",)),
    MetricSpec("tracemill_model_inflight", "gauge", "Model requests of this process sent and not answered "
               "yet (a synchronous call, or the lines of a running batch), by kind", ("kind",)),
    MetricSpec("tracemill_model_tokens_total", "counter", "Model tokens by kind and direction (in, out), "
               "from the provider's usage fields", ("kind", "direction")),
)}


def exported_series() -> frozenset[str]:
    """Every Prometheus series name the metrics above appear under (alerts/dashboards use these)."""
    suffixes = {"histogram": ("_bucket", "_sum", "_count")}
    return frozenset(EXPORT_PREFIX + s.name + x for s in METRICS.values() for x in suffixes.get(s.type, ("",)))


def normalise(key: str, value: object) -> str:
    """The tag value to record: `value` if it is an allowed one, else "other" (bounded cardinality)."""
    if key == "shard":
        text = str(value)
        return text if text.isdigit() and int(text) < MAX_SHARD_LABELS and str(int(text)) == text else OTHER
    text = value if isinstance(value, str) else ""
    return text if text in ALLOWED[key] else OTHER


class MetricsAPI(Protocol):
    """The part of `ray.util.metrics` used here: its `Counter`, `Gauge`, `Histogram` constructors."""
    Counter: Any
    Gauge: Any
    Histogram: Any


_lock = threading.Lock()
_injected: MetricsAPI | None = None
_instruments: dict[str, Any] = {}
_warned: set[str] = set()


def use_backend(api: MetricsAPI | None) -> MetricsAPI | None:
    """Record into `api` from now on (None: back to Ray when initialised); returns the previous."""
    global _injected
    with _lock:
        previous, _injected = _injected, api
        _instruments.clear()
    return previous


def _instrument(name: str) -> Any | None:
    """This process' metric object for `name`, created on first use; None when not recording."""
    inst = _instruments.get(name)
    if inst is not None:
        return inst
    api = _injected
    if api is None:
        if not ray.is_initialized():
            return None  # unit tests, plain scripts: nothing to record into
        from ray.util import metrics as api  # type: ignore[no-redef]
    with _lock:
        if name not in _instruments:
            spec = METRICS[name]
            if spec.type == "histogram":
                _instruments[name] = api.Histogram(
                    name, description=spec.description, boundaries=list(spec.boundaries), tag_keys=spec.tag_keys)
            else:
                factory = api.Counter if spec.type == "counter" else api.Gauge
                _instruments[name] = factory(name, description=spec.description, tag_keys=spec.tag_keys)
        return _instruments[name]


def _emit(name: str, method: str, value: float, tags: Mapping[str, str] | None = None) -> None:
    """Record one point; never raises: a metric must not break the data path it observes."""
    try:
        point = float(value)
        if not math.isfinite(point) or (method == "inc" and point <= 0):
            return  # NaN/inf would poison sums; Ray's Counter.inc refuses 0 and negatives
        point = max(0.0, point)  # gauges here count things; durations are never negative
        inst = _instrument(name)
        if inst is not None:
            getattr(inst, method)(point, tags=dict(tags) if tags else None)
    except Exception:  # noqa: BLE001 - logged once per metric, then silent
        if name not in _warned:
            _warned.add(name)
            log.warning("recording metric %s failed; further failures are not logged", name, exc_info=True)


def record_events_received(transport: str, n: int) -> None:
    """`n` events arrived in a frame/request that parsed and authenticated (the error-rate base)."""
    _emit("tracemill_events_received_total", "inc", n, {"transport": normalise("transport", transport)})


def record_ack(transport: str, n: int, seconds: float) -> None:
    """An ack for `n` events (new or duplicate), `seconds` after the frame was read."""
    tags = {"transport": normalise("transport", transport)}
    _emit("tracemill_events_acked_total", "inc", n, tags)
    _emit("tracemill_ack_latency_seconds", "observe", seconds, tags)


def record_rejected(reason: str, n: int = 1) -> None:
    """`n` events refused with error code `reason` (unknown codes count as "other")."""
    _emit("tracemill_events_rejected_total", "inc", n, {"reason": normalise("reason", reason)})


def set_open_streams(n: int) -> None:
    """This process' open WebSocket streams; Ray's WorkerId tells the replicas apart."""
    _emit("tracemill_open_streams", "set", n)


def set_shard_inflight(shard: int | str, n: int) -> None:
    """Events queued in shard `shard` and not yet committed (saturation against max_inflight_events)."""
    _emit("tracemill_shard_inflight_events", "set", n, {"shard": normalise("shard", shard)})


def record_slow_down(shard: int | str) -> None:
    """Shard `shard` shed a batch with Overloaded: the client was told to slow down."""
    _emit("tracemill_shard_slow_downs_total", "inc", 1, {"shard": normalise("shard", shard)})


@contextmanager
def time_task(kind: str) -> Iterator[None]:
    """Time the block as a `kind` task; an exception also counts a failure and is re-raised.

    Failed attempts are in the duration histogram too: it shows where worker time goes.
    Cancellation (a BaseException such as asyncio.CancelledError) is neither timed nor counted.
    """
    tags = {"kind": normalise("kind", kind)}
    started = time.perf_counter()
    try:
        yield
    except Exception:
        _emit("tracemill_task_duration_seconds", "observe", time.perf_counter() - started, tags)
        _emit("tracemill_task_failures_total", "inc", 1, tags)
        raise
    _emit("tracemill_task_duration_seconds", "observe", time.perf_counter() - started, tags)


def record_vision(outcome: str, tokens_in: int = 0, tokens_out: int = 0, cost_usd: float = 0.0) -> None:
    """One vision analysis: how it was answered, the tokens it used and what it cost."""
    _emit("tracemill_vision_calls_total", "inc", 1, {"outcome": normalise("outcome", outcome)})
    _emit("tracemill_vision_tokens_total", "inc", tokens_in, {"direction": "in"})
    _emit("tracemill_vision_tokens_total", "inc", tokens_out, {"direction": "out"})
    _emit("tracemill_vision_cost_usd_total", "inc", cost_usd)


def set_breaker_open(is_open: bool) -> None:
    """This process' vision circuit breaker: 1 open (calls fall back), 0 closed."""
    _emit("tracemill_vision_breaker_open", "set", 1.0 if is_open else 0.0)


def record_finalization(result: str) -> None:
    """A session's finalisation ended as ready, rejected (quality) or failed (an error)."""
    _emit("tracemill_finalizations_total", "inc", 1, {"result": normalise("result", result)})


def set_finalizations_running(n: int) -> None:
    """Finalisations under way in this process."""
    _emit("tracemill_finalizations_running", "set", n)


def set_jobs(kind: str, counts: Mapping[str, int]) -> None:
    """Jobs of `kind` per state; every known state is set (absent ones to 0) so none goes stale.

    Set from one process only (the one that watches jobs); query it with `max by (kind, state)`.
    """
    totals: dict[str, float] = dict.fromkeys(sorted(ALLOWED["state"]), 0.0)
    try:
        for state, n in counts.items():
            key = normalise("state", state)
            totals[key] = totals.get(key, 0.0) + max(0.0, float(n))
    except (TypeError, ValueError, AttributeError):
        log.warning("set_jobs(%r): counts must map state -> number; not recorded", kind)
        return
    job_kind = normalise("job_kind", kind)
    for state, n in totals.items():
        _emit("tracemill_jobs", "set", n, {"kind": job_kind, "state": state})


def set_model_backlog(kind: str, n: int) -> None:
    """Model calls of `kind` this process still has to make or wait for."""
    _emit("tracemill_model_backlog", "set", max(0, n), {"kind": normalise("model_kind", kind)})


def record_model_calls(kind: str, mode: str, n: int = 1, cost_usd: float = 0.0,
                       tokens_in: int = 0, tokens_out: int = 0) -> None:
    """`n` requests of `kind` sent one by one (mode sync) or as batch lines, their tokens and
    what they cost."""
    tags = {"kind": normalise("model_kind", kind)}
    _emit("tracemill_model_calls_total", "inc", n, tags | {"mode": normalise("mode", mode)})
    _emit("tracemill_model_cost_usd_total", "inc", cost_usd, tags)
    _emit("tracemill_model_tokens_total", "inc", tokens_in, tags | {"direction": "in"})
    _emit("tracemill_model_tokens_total", "inc", tokens_out, tags | {"direction": "out"})


def record_model_cost(kind: str, cost_usd: float) -> None:
    """The estimated cost of calls of `kind` counted elsewhere (batch lines: the caller knows the price)."""
    _emit("tracemill_model_cost_usd_total", "inc", cost_usd, {"kind": normalise("model_kind", kind)})


_inflight: dict[str, int] = {}


def model_inflight(kind: str, delta: int) -> None:
    """`delta` more (or fewer) requests of `kind` in flight in this process."""
    key = normalise("model_kind", kind)
    with _lock:
        _inflight[key] = n = max(0, _inflight.get(key, 0) + delta)
    _emit("tracemill_model_inflight", "set", n, {"kind": key})
