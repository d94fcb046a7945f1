"""Closed-loop WebSocket load generator for the ingest endpoint (PROTOCOL.md, "Stream").

Each of N sessions is created over HTTP, then streams frames of B click events over its own
WebSocket with exactly one frame in flight: send, wait for the ack, send the next. Throughput
is therefore bounded by ack latency, which is what a batching browser client experiences.

    python -m cluster.bench.loadgen --url http://127.0.0.1:8000 --api-key KEY \
        --sessions 100 --batch 50 --duration 20 [--warmup 3] [--prefix /noop] [--json]

`run_load(cfg)` is the same thing as a coroutine; `tracemill bench` runs it against the real
endpoint and the no-op baseline (`serve_app.noop`) and prints `format_comparison(...)`.

The generator shares the machine with the server, so it spends as little CPU as it can:
event JSON is pre-encoded per element and only `seq`/`ts` are formatted in per event.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from actors.ingest.admission import LoopLag
from cluster.bench.load_mix import SideTraffic
from cluster.stream_client import exchange, open_stream

__all__ = ["LoadConfig", "LoadResult", "EventFactory", "run_load", "format_result",
           "format_comparison", "add_arguments", "run", "main"]  # fmt: skip

# Pause before resending a frame the server answered with an error (nothing of it was stored).
_ERROR_BACKOFF_S = 0.1
_MAX_ERROR_SAMPLES = 5

# Click targets as the extension records them (PROTOCOL.md, "An Element"): page, title, element
# with tag, text, attributes, 3 selectors (Playwright's ranking: test-id, role, label < css), bbox.
_TARGETS: list[tuple[str, str, dict[str, Any]]] = [
    ("https://shop.example/p/42", "Blue kettle", {
        "tag": "button", "text": "Add to cart",
        "attributes": {"id": "add-42", "type": "button", "data-testid": "add-to-cart"},
        "selectors": [{"kind": "testid", "value": "add-to-cart", "unique": True},
                      {"kind": "role", "value": 'button[name="Add to cart"]', "unique": True},
                      {"kind": "css", "value": "#add-42", "unique": True}],
        "bbox": {"x": 600, "y": 370, "width": 120, "height": 32}}),
    ("https://shop.example/cart", "Your cart", {
        "tag": "a", "text": "Proceed to checkout",
        "attributes": {"href": "/checkout", "role": "link", "data-testid": "checkout"},
        "selectors": [{"kind": "testid", "value": "checkout", "unique": True},
                      {"kind": "role", "value": 'link[name="Proceed to checkout"]', "unique": True},
                      {"kind": "css", "value": "main > div.summary > a.btn", "unique": True}],
        "bbox": {"x": 980, "y": 540, "width": 220, "height": 44}}),
    ("https://shop.example/checkout", "Checkout", {
        "tag": "input", "text": "",
        "attributes": {"type": "checkbox", "name": "gift_wrap", "aria-label": "Gift wrap"},
        "selectors": [{"kind": "label", "value": "Gift wrap", "unique": True},
                      {"kind": "role", "value": 'checkbox[name="Gift wrap"]', "unique": True},
                      {"kind": "css", "value": "input[name=gift_wrap]", "unique": True}],
        "bbox": {"x": 412, "y": 618, "width": 16, "height": 16}}),
]  # fmt: skip


class EventFactory:
    """Frames of dense-`seq` click events for one session, cheap to make.

    Everything but `seq` and `ts` is JSON-encoded once; a frame is string formatting.
    """

    def __init__(self, session_index: int) -> None:
        self._tails: list[str] = []
        for k in range(len(_TARGETS)):
            url, title, element = _TARGETS[(session_index + k) % len(_TARGETS)]
            box = element["bbox"]
            rest = {"type": "click", "url": url, "title": title, "target": element,
                    "x": box["x"] + (session_index * 7) % box["width"],
                    "y": box["y"] + box["height"] // 2, "button": "left"}  # fmt: skip
            self._tails.append("," + json.dumps(rest, separators=(",", ":"))[1:])

    def frame(self, first_seq: int, count: int) -> str:
        now_ms = int(time.time() * 1000)
        tails, n = self._tails, len(self._tails)
        # Events of one frame happened over the last few hundred ms, 5 ms apart.
        parts = [
            '{"seq":%d,"ts":%d%s' % (s, now_ms - (count - 1 - i) * 5, tails[s % n])
            for i, s in enumerate(range(first_seq, first_seq + count))
        ]
        return '{"type":"events","events":[' + ",".join(parts) + "]}"


class LoadConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field("http://127.0.0.1:8000", pattern=r"^https?://", description="Serve base URL")
    api_key: SecretStr
    prefix: str = Field("", pattern=r"^(/[^/]+)*$", description="app route prefix, e.g. /noop")
    sessions: int = Field(100, ge=1, le=10_000)
    batch: int = Field(50, ge=1, le=10_000, description="events per frame")
    duration_s: float = Field(20.0, gt=0, le=3600)
    warmup_s: float = Field(3.0, ge=0, le=600)
    connect_concurrency: int = Field(50, ge=1, le=1000)
    connect_timeout_s: float = Field(10.0, gt=0, description="per session: create + upgrade")
    drain_s: float = Field(5.0, ge=0, description="wait for in-flight acks after the window")
    hard_timeout_s: float | None = Field(None, gt=0, description="whole run; derived if unset")
    max_frame_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    compression: bool = Field(False, description="permessage-deflate (browsers use it)")
    progress_interval_s: float | None = Field(2.0, gt=0, description="None: no progress")
    # The mixed workload (cluster/bench/load_mix.py); all off: the stream alone, as the baseline speaks.
    screenshot_every: int = Field(0, ge=0, description="PUT a 1280x800 PNG every N acked frames")
    read_every: int = Field(0, ge=0, description="GET the session every N acked frames")
    finish: bool = Field(False, description="finish each session when its loop ends")

    def effective_hard_timeout_s(self) -> float:
        if self.hard_timeout_s is not None:
            return self.hard_timeout_s
        # Connect budget grows with N (bounded concurrency), then the run itself.
        connect_budget = 30.0 + self.sessions * 0.05
        return connect_budget + self.warmup_s + self.duration_s + self.drain_s + 10.0


class LoadResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: str
    sessions: int
    sessions_connected: int
    batch: int
    duration_s: float = Field(description="measured window actually covered")
    frames_acked: int
    events_acked: int
    frames_per_s: float
    events_per_s: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    latency_max_ms: float | None
    accepted_p50_ms: float | None = Field(None, description="from the send that was acked to its ack")
    accepted_p99_ms: float | None = None
    accepted_max_ms: float | None = None
    slow_down_p99_ms: float | None = Field(None, description="from a shed send to its slow_down")
    slow_down_max_ms: float | None = None
    generator_lag_max_ms: float | None = Field(
        None, description="the generator's own event loop, longest late wake-up: large means it measured itself")
    errors: int = Field(description="error frames + failed sessions/connections")
    error_frames: int
    connect_failures: int
    dropped_connections: int
    slow_downs: int
    ack_mismatches: int = Field(description="acks whose acked_through != last seq sent")
    timed_out: bool
    error_samples: list[str] = Field(default_factory=list)
    measured_from: float | None = Field(None, description="time.perf_counter() at the window's start")
    measured_to: float | None = Field(None, description="time.perf_counter() at the window's end")
    side: dict[str, dict[str, Any]] | None = Field(
        None, description="screenshots/reads/finishes of a mixed load: ok, failed, per_s, p99_ms")


@dataclass
class _Stats:
    """Shared counters; one event loop, so no locks."""

    measure_start: float = float("inf")
    measure_end: float = float("inf")
    frames_total: int = 0
    events_total: int = 0
    frames: int = 0
    events: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    accepted_ms: list[float] = field(default_factory=list)
    slow_down_ms: list[float] = field(default_factory=list)
    error_frames: int = 0
    connect_failures: int = 0
    dropped: int = 0
    slow_downs: int = 0
    mismatches: int = 0
    connected: int = 0
    samples: list[str] = field(default_factory=list)
    # What each session's loop awaits now ("ack", "screenshots", "finish"), so a run that
    # ends with loops still waiting says what they wait for.
    waiting: dict[str, str] = field(default_factory=dict)

    def ack(self, now: float, latency_s: float, events: int, matched: bool, accepted_s: float) -> None:
        self.frames_total += 1
        self.events_total += events
        if not matched:
            self.mismatches += 1
        if self.measure_start <= now < self.measure_end:
            self.frames += 1
            self.events += events
            self.latencies_ms.append(latency_s * 1000.0)
            self.accepted_ms.append(accepted_s * 1000.0)

    def errors(self) -> int:
        return self.error_frames + self.connect_failures + self.dropped

    def sample(self, text: str) -> None:
        if len(self.samples) < _MAX_ERROR_SAMPLES:
            self.samples.append(text[:300])


async def _open(http: httpx.AsyncClient, cfg: LoadConfig) -> tuple[str, ClientConnection]:
    """Create one session over HTTP, open its stream and authenticate with the first frame."""
    resp = await http.post(
        f"{cfg.url.rstrip('/')}{cfg.prefix}/v1/sessions",
        json={"type": "automated", "task": "loadgen"},
        headers={"Authorization": f"Bearer {cfg.api_key.get_secret_value()}"},
    )
    if resp.status_code not in (200, 201):
        raise RuntimeError(f"POST /v1/sessions -> {resp.status_code}: {resp.text[:200]}")
    session_id = str(resp.json()["session_id"])
    return session_id, await open_stream(
        cfg.url, session_id, cfg.api_key.get_secret_value(), prefix=cfg.prefix,
        max_size=cfg.max_frame_bytes, open_timeout=cfg.connect_timeout_s, compression=cfg.compression,
    )  # fmt: skip


async def _exchange(
    ws: ClientConnection, frame: str, last_seq: int, events: int, stats: _Stats
) -> bool:
    """Send one frame and wait for its ack. False when the server answered with an error.

    Latency runs from the first send, so slow_down waits count: it is the time until the
    client may forget the events.
    """
    started = time.perf_counter()
    reply = await exchange(ws, frame)
    stats.slow_downs += reply.slow_downs
    now = time.perf_counter()
    if stats.measure_start <= now < stats.measure_end:
        stats.slow_down_ms.extend(w * 1000.0 for w in reply.slow_down_waits or ())
    if reply.ack is not None:
        stats.ack(now, now - started, events, reply.ack.get("acked_through") == last_seq, now - reply.sent_at)
        return True
    stats.error_frames += 1
    stats.sample(f"error frame: {json.dumps(reply.error)}")
    return False


async def _stream(session_id: str, ws: ClientConnection, factory: EventFactory,
                  cfg: LoadConfig, stats: _Stats, side: SideTraffic | None) -> None:  # fmt: skip
    """The closed loop of one connection, until the measured window ends."""
    seq, frame_no = 0, 0
    while time.perf_counter() < stats.measure_end:
        frame = factory.frame(seq, cfg.batch)
        last_seq = seq + cfg.batch - 1
        stats.waiting[session_id] = "ack"
        if await _exchange(ws, frame, last_seq, cfg.batch, stats):
            seq, frame_no = last_seq + 1, frame_no + 1
            if side is not None:
                side.after_ack(session_id, frame_no, last_seq)
        else:
            await asyncio.sleep(_ERROR_BACKOFF_S)  # resend the same seq range next turn
    if side is not None and cfg.finish:
        stats.waiting[session_id] = "its last screenshot or read"
        await side.settle(session_id)
        stats.waiting[session_id] = "its finish"
        await side.finish(session_id)
    stats.waiting.pop(session_id, None)


async def _connect_all(cfg: LoadConfig, stats: _Stats,
                       opened: list[tuple[str, ClientConnection]]) -> None:
    """Create every session and open its socket, at most `connect_concurrency` at a time."""
    gate = asyncio.Semaphore(cfg.connect_concurrency)
    limits = httpx.Limits(max_connections=cfg.connect_concurrency)
    async with httpx.AsyncClient(timeout=cfg.connect_timeout_s, limits=limits) as http:

        async def one() -> None:
            async with gate:
                try:
                    opened.append(await asyncio.wait_for(_open(http, cfg), cfg.connect_timeout_s))
                    stats.connected += 1
                except Exception as exc:  # noqa: BLE001 - each failure is counted, not fatal
                    stats.connect_failures += 1
                    stats.sample(f"connect: {type(exc).__name__}: {exc}")

        await asyncio.gather(*(one() for _ in range(cfg.sessions)))


async def _run_connection(index: int, session_id: str, ws: ClientConnection, cfg: LoadConfig,
                          stats: _Stats, side: SideTraffic | None) -> None:  # fmt: skip
    try:
        await _stream(session_id, ws, EventFactory(index), cfg, stats, side)
    except ConnectionClosed as exc:
        stats.dropped += 1
        stats.sample(f"connection closed: code={exc.rcvd.code if exc.rcvd else None}")
    except Exception as exc:  # noqa: BLE001 - one broken connection must not end the run
        stats.dropped += 1
        stats.sample(f"stream: {type(exc).__name__}: {exc}")


async def _progress(cfg: LoadConfig, stats: _Stats, t0: float) -> None:
    assert cfg.progress_interval_s is not None
    while True:
        await asyncio.sleep(cfg.progress_interval_s)
        now = time.perf_counter()
        phase = ("connect" if stats.measure_start == float("inf") else "warmup"
                 if now < stats.measure_start else "measure" if now < stats.measure_end
                 else "drain")  # fmt: skip
        print(f"[loadgen] t={now - t0:6.1f}s {phase:7s} conns={stats.connected}"
              f" frames={stats.frames_total} events={stats.events_total}"
              f" errors={stats.errors()} slow_downs={stats.slow_downs}",
              file=sys.stderr, flush=True)  # fmt: skip


async def _drive(cfg: LoadConfig, stats: _Stats, opened: list[tuple[str, ClientConnection]],
                 tasks: list[asyncio.Task[None]], side: SideTraffic | None) -> None:
    """Connect everyone, then start all loops together: warmup, measured window, drain."""
    await _connect_all(cfg, stats, opened)
    stats.measure_start = time.perf_counter() + cfg.warmup_s
    stats.measure_end = stats.measure_start + cfg.duration_s
    if side is not None:
        side.window = (stats.measure_start, stats.measure_end)
    for i, (session_id, ws) in enumerate(opened):
        tasks.append(asyncio.create_task(_run_connection(i, session_id, ws, cfg, stats, side)))
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=cfg.warmup_s + cfg.duration_s + cfg.drain_s)
    if pending:  # stuck waiting: count them, don't wait forever
        stats.dropped += len(pending)
        what = Counter(stats.waiting.values())
        stats.sample(f"{len(pending)} session loop(s) still waiting after the drain: "
                     + ", ".join(f"{n} for {w}" for w, n in what.most_common()))


async def run_load(cfg: LoadConfig) -> LoadResult:
    """Run one bounded load test and summarise it. Always returns, within the hard timeout."""
    stats = _Stats()
    opened: list[tuple[str, ClientConnection]] = []
    tasks: list[asyncio.Task[None]] = []
    side = None
    if cfg.screenshot_every or cfg.read_every or cfg.finish:
        from cluster.bench.frames import synthetic_page

        side = SideTraffic(cfg.url + cfg.prefix, cfg.api_key.get_secret_value(),
                           screenshot_every=cfg.screenshot_every, read_every=cfg.read_every,
                           frames=[synthetic_page(i) for i in range(4)] if cfg.screenshot_every else [])
    lag = LoopLag()
    lag.ensure_running()
    reporter = None
    if cfg.progress_interval_s is not None:
        reporter = asyncio.create_task(_progress(cfg, stats, time.perf_counter()))
    timed_out = False
    try:
        async with asyncio.timeout(cfg.effective_hard_timeout_s()):
            await _drive(cfg, stats, opened, tasks, side)
    except TimeoutError:
        timed_out = True
    finally:
        if reporter is not None:
            reporter.cancel()
        for task in tasks:
            task.cancel()
        # close_timeout bounds each close; the summary is taken after, so counters are final.
        await asyncio.gather(*tasks, *(ws.close() for _, ws in opened), return_exceptions=True)
        if side is not None:
            await side.drain()
            await side.aclose()
    result = _summarise(cfg, stats, timed_out, side)
    result.generator_lag_max_ms = round(lag.worst_s * 1000, 1)
    return result


def _summarise(cfg: LoadConfig, stats: _Stats, timed_out: bool, side: SideTraffic | None = None) -> LoadResult:
    # The window actually covered: shorter than asked when the hard timeout cut it.
    end = min(stats.measure_end, time.perf_counter())
    window = max(end - stats.measure_start, 0.0) if stats.measure_start < end else 0.0
    lat = np.asarray(stats.latencies_ms, dtype=np.float64)
    pct = np.percentile(lat, [50, 95, 99]).tolist() if lat.size else [None] * 3
    p50, p95, p99 = pct
    accepted = np.asarray(stats.accepted_ms, dtype=np.float64)
    shed = np.asarray(stats.slow_down_ms, dtype=np.float64)
    return LoadResult(
        target=f"{cfg.url.rstrip('/')}{cfg.prefix}", sessions=cfg.sessions,
        sessions_connected=stats.connected, batch=cfg.batch, duration_s=round(window, 3),
        frames_acked=stats.frames, events_acked=stats.events,
        frames_per_s=stats.frames / window if window else 0.0,
        events_per_s=stats.events / window if window else 0.0,
        latency_p50_ms=p50, latency_p95_ms=p95, latency_p99_ms=p99,
        latency_max_ms=float(lat.max()) if lat.size else None,
        accepted_p50_ms=float(np.percentile(accepted, 50)) if accepted.size else None,
        accepted_p99_ms=float(np.percentile(accepted, 99)) if accepted.size else None,
        accepted_max_ms=float(accepted.max()) if accepted.size else None,
        slow_down_p99_ms=float(np.percentile(shed, 99)) if shed.size else None,
        slow_down_max_ms=float(shed.max()) if shed.size else None,
        errors=stats.errors(), error_frames=stats.error_frames,
        connect_failures=stats.connect_failures, dropped_connections=stats.dropped,
        slow_downs=stats.slow_downs, ack_mismatches=stats.mismatches, timed_out=timed_out,
        error_samples=stats.samples + (side_samples(side) if side else []),
        measured_from=stats.measure_start if window else None, measured_to=end if window else None,
        side=None if side is None else {
            name: {"ok": c.ok, "failed": c.failed, "per_s": round(c.in_window / window, 2) if window else 0.0,
                   "p99_ms": c.p99_ms()}
            for name, c in (("screenshots", side.screenshots), ("reads", side.reads),
                            ("finishes", side.finishes))},
    )  # fmt: skip


def side_samples(side: SideTraffic) -> list[str]:
    return side.screenshots.samples + side.reads.samples + side.finishes.samples


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


_COLUMNS = ("target", "sess", "batch", "frames/s", "events/s", "p50 ms", "p95 ms", "p99 ms",
            "errors", "slow_downs")  # fmt: skip


def _row(r: LoadResult) -> tuple[str, ...]:
    return (
        r.target, f"{r.sessions_connected}/{r.sessions}", str(r.batch), f"{r.frames_per_s:.1f}",
        f"{r.events_per_s:.0f}", _ms(r.latency_p50_ms), _ms(r.latency_p95_ms),
        _ms(r.latency_p99_ms), str(r.errors), str(r.slow_downs),
    )  # fmt: skip


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows)


def format_result(result: LoadResult) -> str:
    extra = f"window {result.duration_s:.1f}s, ack mismatches {result.ack_mismatches}"
    if result.timed_out:
        extra += ", TIMED OUT"
    lines = [_table([_COLUMNS, _row(result)]), extra]
    lines += [f"  {s}" for s in result.error_samples]
    return "\n".join(lines)


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "-"


def format_comparison(real: LoadResult, baseline: LoadResult) -> str:
    """Both rows, then real/baseline for acked events/s and for p99 latency."""
    table = _table([("", *_COLUMNS), ("real", *_row(real)), ("baseline", *_row(baseline))])
    return (
        f"{table}\n"
        f"events/s real/baseline: {_ratio(real.events_per_s, baseline.events_per_s)}"
        f"   p99 real/baseline: {_ratio(real.latency_p99_ms, baseline.latency_p99_ms)}"
    )


_DESCRIPTION = "Closed-loop WebSocket load against a tracemill (or no-op) ingest endpoint."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = _DESCRIPTION
    p.add_argument("--url", default="http://127.0.0.1:8000")
    env_key = os.environ.get("TRACEMILL_API_KEY")
    p.add_argument("--api-key", default=env_key, required=not env_key, help="or env TRACEMILL_API_KEY")
    p.add_argument("--prefix", default="", help="application route prefix, e.g. /noop")
    p.add_argument("--sessions", type=int, default=100)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds first")
    p.add_argument("--connect-concurrency", type=int, default=50)
    p.add_argument("--compression", action="store_true", help="permessage-deflate")
    p.add_argument("--hard-timeout", type=float, default=None)
    p.add_argument("--json", action="store_true", help="print the LoadResult as JSON")


def run(args: argparse.Namespace) -> int:
    """`tracemill loadgen`: one load run, printed as a table (or JSON)."""
    cfg = LoadConfig(
        url=args.url, api_key=args.api_key, prefix=args.prefix.rstrip("/"),
        sessions=args.sessions, batch=args.batch, duration_s=args.duration,
        warmup_s=args.warmup, connect_concurrency=args.connect_concurrency,
        compression=args.compression, hard_timeout_s=args.hard_timeout,
    )  # fmt: skip
    try:  # uvloop cuts the generator's own CPU cost; it shares the cores with the server
        import uvloop
    except ImportError:
        result = asyncio.run(run_load(cfg))
    else:
        result = uvloop.run(run_load(cfg))
    print(result.model_dump_json(indent=2) if args.json else format_result(result))
    return 0 if result.errors == 0 and not result.timed_out else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cluster.bench.loadgen")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
