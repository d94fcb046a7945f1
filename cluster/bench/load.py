"""`tracemill bench load`: the mixed workload (WebSocket event frames, screenshot PUTs, reads,
finishes) at N = 10, 100 and 1,000 open sessions, with three baselines from the same run:

* a no-op Serve WebSocket endpoint (`serve_app.noop`) under the same stream at the same N;
* raw asyncpg batched upserts (COPY into staging + INSERT … ON CONFLICT) into the same schema;
* raw Pillow WebP encoding of the same frames in a `multiprocessing.Pool` on the same cores.

Per N it records acked events/s, screenshots/s, ack latency p50/p95/p99, CPU and resident
memory per server process role, and (at the largest N) the memory an idle open session costs.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import threading
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from actors.auth import DEFAULT_ORG_ID
from actors.ingest.group_commit import prepare_staging
from cluster.bench.frames import compress_and_measure, synthetic_page
from cluster.bench.idle import idle_session_bytes
from cluster.bench.loadgen import LoadConfig, LoadResult, run_load

__all__ = ["ProcessSampler", "add_arguments", "pool_webp_frames_per_s", "raw_upserts_per_s", "run", "run_n"]


def _progress(text: str) -> None:
    print(f"[bench load] {text}", file=sys.stderr, flush=True)


def role_of(proc: psutil.Process) -> str | None:
    """What a process is to tracemill, from its title; None for processes that are not ours."""
    try:
        cmd = " ".join(proc.cmdline())[:200]
        name = proc.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    for needle, role in (("ServeReplica:tracemill", "ingress replica"), ("ServeReplica:noop", "noop replica"),
                         ("SessionShard", "shard actor"), ("ManagedShard", "shard actor"), ("ServeController", "serve controller"),
                         ("ProxyActor", "serve proxy"), ("VisionService", "vision service"),
                         ("haproxy", "haproxy"), ("gcs_server", "ray gcs"), ("raylet", "raylet"),
                         # a task worker's title changes with the task it runs: one role for all
                         ("ray::compress_task", "task workers"), ("ray::vision_task", "task workers"),
                         ("ray::analysis_task", "task workers"), ("ray::archive_task", "task workers"),
                         ("ray::IDLE", "task workers")):
        if needle in cmd:
            return role
    if name.startswith("postgres"):
        return "postgres"
    return None


class ProcessSampler:
    """CPU seconds and peak RSS per role, sampled every `interval_s` in a thread."""

    def __init__(self, interval_s: float = 0.5, pg_data_dir: Any = None) -> None:
        self.interval_s = interval_s
        self.pg_data_dir = str(pg_data_dir) if pg_data_dir else None
        self.samples: list[tuple[float, dict[int, tuple[str, float, int]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._me = psutil.Process()

    def _ours(self) -> list[psutil.Process]:
        """This stack's processes only (other clusters may share the machine): everything this
        process started (Ray's GCS, raylet, workers, Serve, HAProxy), and the PostgreSQL
        server of our data directory with its backends."""
        procs = [self._me, *self._me.children(recursive=True)]
        if self.pg_data_dir:
            for proc in psutil.process_iter():
                try:
                    if proc.name().startswith("postgres") and self.pg_data_dir in " ".join(proc.cmdline()):
                        procs += [proc, *proc.children(recursive=True)]
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
        return procs

    def _snapshot(self) -> dict[int, tuple[str, float, int]]:
        out = {}
        for proc in self._ours():
            role = "load generator" if proc.pid == self._me.pid else role_of(proc)
            if role is None:
                continue
            try:
                cpu, mem = proc.cpu_times(), proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            out[proc.pid] = (role, cpu.user + cpu.system, mem)
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter(), self._snapshot()))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> ProcessSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def per_role(self, start: float, end: float) -> dict[str, dict[str, float]]:
        """CPU % of one core (summed over a role's processes) and peak RSS MiB over [start, end]."""
        window = [(t, snap) for t, snap in self.samples if start <= t <= end]
        if len(window) < 2:
            return {}
        (t0, first), (t1, last) = window[0], window[-1]
        roles: dict[str, dict[str, float]] = defaultdict(lambda: {"cpu_pct": 0.0, "rss_mib": 0.0, "processes": 0})
        for pid, (role, cpu, _) in last.items():
            before = first.get(pid, (role, cpu, 0))[1]
            roles[role]["cpu_pct"] += 100 * (cpu - before) / (t1 - t0)
            roles[role]["processes"] += 1
        for role in roles:
            peak = max(sum(rss for r, _, rss in snap.values() if r == role) for _, snap in window)
            roles[role]["rss_mib"] = peak / 2**20
        return {r: {k: round(v, 1) for k, v in d.items()} for r, d in sorted(roles.items())}


def run_n(endpoint: str, key: str, n: int, *, duration_s: float, warmup_s: float, mixed: bool,
          prefix: str = "", pg_data_dir: Any = None) -> tuple[LoadResult, dict[str, dict[str, float]]]:
    # A long drain: at N=1000 an ack can take seconds, and a loop cut off while waiting for
    # one would count as a dropped connection though nothing was lost.
    cfg = LoadConfig(url=endpoint, api_key=key, prefix=prefix, sessions=n, batch=50, duration_s=duration_s,
                     warmup_s=warmup_s, progress_interval_s=5.0, connect_timeout_s=60, drain_s=30.0,
                     screenshot_every=10 if mixed else 0, read_every=5 if mixed else 0, finish=mixed)
    with ProcessSampler(pg_data_dir=pg_data_dir) as sampler:
        result = asyncio.run(run_load(cfg))
    roles = sampler.per_role(result.measured_from or 0, result.measured_to or 0)
    return result, roles


async def _upserts(dsn: str, seconds: float, batch: int, workers: int) -> float:
    pool = await asyncpg.create_pool(dsn, min_size=workers, max_size=workers, init=prepare_staging)
    sid = uuid.uuid4()
    await pool.execute("INSERT INTO sessions (session_id, org_id, type, request_hash) VALUES ($1, $2,"
                       " 'automated', '\\x00')", sid, DEFAULT_ORG_ID)
    payload = '{"x": 610, "y": 386, "button": "left", "title": "Blue kettle"}'
    target = '{"tag": "button", "text": "Add to cart", "selectors": [{"kind": "testid", "value": "add"}]}'
    counter, rows_done = iter(range(10**9)), 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal rows_done
        while time.perf_counter() < deadline:
            base = next(counter) * batch
            now = datetime.now(UTC)
            rows = [(sid, base + i, "click", now, "https://shop.example/p/42", target, payload) for i in range(batch)]
            async with pool.acquire() as conn, conn.transaction():
                await conn.copy_records_to_table("interactions_staging", records=rows, columns=(
                    "session_id", "seq", "type", "ts", "url", "target", "payload"))
                await conn.execute(
                    "INSERT INTO interactions (session_id, seq, type, ts, url, target, payload, session_month)"
                    " SELECT st.session_id, st.seq, st.type, st.ts, st.url, st.target::jsonb, st.payload::jsonb,"
                    " tracemill_session_month(s.created_at) FROM interactions_staging st"
                    " JOIN sessions s USING (session_id) ON CONFLICT (session_id, seq, session_month) DO NOTHING")
            rows_done += batch

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    elapsed = time.perf_counter() - started
    await pool.execute("DELETE FROM sessions WHERE session_id = $1", sid)
    await pool.close()
    return rows_done / elapsed


def raw_upserts_per_s(dsn: str, seconds: float = 8.0, batch: int = 500, workers: int = 2) -> float:
    return asyncio.run(_upserts(dsn, seconds, batch, workers))


def pool_webp_frames_per_s(frames: int = 24) -> float:
    pngs = [synthetic_page(i) for i in range(4)]
    work = [pngs[i % 4] for i in range(frames)]
    with multiprocessing.get_context("spawn").Pool(psutil.cpu_count() or 2) as pool:
        pool.map(compress_and_measure, pngs)  # warm the workers
        started = time.perf_counter()
        pool.map(compress_and_measure, work, chunksize=1)
        return frames / (time.perf_counter() - started)


async def _finalizing(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM sessions WHERE status = 'finalizing'"))
    finally:
        await conn.close()


def settle(dsn: str, timeout_s: float = 240.0) -> float:
    """Wait until the previous run's finished sessions are finalised, so that their screenshot
    compression does not run during the next measurement; returns the seconds waited."""
    started = time.monotonic()
    while (left := asyncio.run(_finalizing(dsn))) and time.monotonic() - started < timeout_s:
        _progress(f"waiting for {left} session(s) to finish finalising")
        time.sleep(5.0)
    return round(time.monotonic() - started, 1)


def _row(result: LoadResult) -> dict[str, Any]:
    side = result.side or {}
    return {"sessions_connected": result.sessions_connected, "events_per_s": round(result.events_per_s, 1),
            "screenshots_per_s": side.get("screenshots", {}).get("per_s"),
            "screenshot_p99_ms": side.get("screenshots", {}).get("p99_ms"),
            "reads_per_s": side.get("reads", {}).get("per_s"),
            "finishes_ok": side.get("finishes", {}).get("ok"),
            "p50_ms": result.latency_p50_ms, "p95_ms": result.latency_p95_ms, "p99_ms": result.latency_p99_ms,
            "accepted_p50_ms": result.accepted_p50_ms, "accepted_p99_ms": result.accepted_p99_ms,
            "accepted_max_ms": result.accepted_max_ms, "slow_down_p99_ms": result.slow_down_p99_ms,
            "slow_down_max_ms": result.slow_down_max_ms, "finish_p99_ms": side.get("finishes", {}).get("p99_ms"),
            "waiting_after_drain": result.dropped_connections, "generator_lag_max_ms": result.generator_lag_max_ms,
            "errors": result.errors, "slow_downs": result.slow_downs, "error_samples": result.error_samples}


def bench_load(stack: Any, key: str, ns: list[int], duration_s: float, warmup_s: float) -> dict[str, Any]:
    """Every figure of the load benchmark against a started stack with the no-op app at /noop."""
    dsn = stack.settings.database.url.get_secret_value()
    _progress("baseline: raw asyncpg batched upserts")
    upserts = raw_upserts_per_s(dsn)
    _progress("baseline: Pillow WebP in a multiprocessing.Pool")
    webp = pool_webp_frames_per_s()
    pg_dir = stack.postgres.data_dir if stack.postgres is not None else None
    # First, on the fresh stack: after the load runs, finalisations and freed buffers move
    # the resident memory by more than a thousand idle sessions take.
    _progress(f"idle sessions: {max(ns)} open, authenticated, silent")
    idle = idle_session_bytes(stack.endpoint, key, max(ns), pg_dir)
    runs = []
    for n in ns:
        settled_s = settle(dsn)
        _progress(f"N={n}: no-op Serve WebSocket (stream only)")
        noop, noop_roles = run_n(stack.endpoint, key, n, duration_s=duration_s, warmup_s=warmup_s,
                                 mixed=False, prefix="/noop", pg_data_dir=pg_dir)
        _progress(f"N={n}: tracemill, stream only")
        stream, _ = run_n(stack.endpoint, key, n, duration_s=duration_s, warmup_s=warmup_s, mixed=False,
                          pg_data_dir=pg_dir)
        _progress(f"N={n}: tracemill, mixed workload")
        real, roles = run_n(stack.endpoint, key, n, duration_s=duration_s, warmup_s=warmup_s, mixed=True,
                            pg_data_dir=pg_dir)
        runs.append({"sessions": n, "settled_before_s": settled_s, "tracemill": _row(real) | {"processes": roles},
                     "noop_baseline": _row(noop) | {"processes": noop_roles},
                     "tracemill_stream_only": _row(stream),
                     "ratio_events_per_s_to_noop": round(real.events_per_s / noop.events_per_s, 3)
                     if noop.events_per_s else None,
                     "ratio_events_per_s_to_raw_upserts": round(real.events_per_s / upserts, 3)})
    return {"baselines": {"raw_upserts_rows_per_s": round(upserts), "pool_webp_frames_per_s": round(webp, 2)},
            "runs": runs, "idle": idle,
            "workload": {"batch": 50, "screenshot_every_frames": 10, "read_every_frames": 5,
                         "finish": True, "duration_s": duration_s, "warmup_s": warmup_s,
                         "screenshot": "1280x800 PNG (synthetic text-heavy page)"}}


def plot(result: dict[str, Any], path: Any) -> None:
    """events/s and p99 ack latency against N, tracemill beside the no-op Serve baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [r["sessions"] for r in result["runs"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=100)
    for key, label, colour in (("tracemill", "tracemill (mixed workload)", "#3b6ea8"),
                               ("tracemill_stream_only", "tracemill (events only)", "#7aa6d6"),
                               ("noop_baseline", "no-op Serve WebSocket", "#999999")):
        left.plot(ns, [r[key]["events_per_s"] for r in result["runs"]], "o-", label=label, color=colour)
        right.plot(ns, [r[key]["p99_ms"] or 0 for r in result["runs"]], "o-", label=label, color=colour)
    left.axhline(result["baselines"]["raw_upserts_rows_per_s"], linestyle="--", color="#b03030",
                 label="raw asyncpg upserts")
    left.set(xscale="log", yscale="log", xlabel="open sessions (N)", ylabel="acked events/s",
             title="Throughput")
    right.set(xscale="log", yscale="log", xlabel="open sessions (N)", ylabel="p99 ack latency (ms)",
              title="Ack latency, p99")
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sessions", default="10,100,1000", help="comma-separated N values")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--output", type=Path, help="JSON; the plot goes beside it as .png")


def run(args: argparse.Namespace) -> int:
    """`tracemill bench load`: a private stack with the no-op app beside it; a table per N."""
    from cluster.bench.stack import private_stack  # Ray once the command runs
    from cluster.results import write_result

    ns = sorted({int(n) for n in args.sessions.split(",") if n.strip()})
    with private_stack(noop=True) as (stack, key):
        result = bench_load(stack, key, ns, args.duration, args.warmup)
    print(f"{'N':>6} {'events/s':>10} {'no-op':>10} {'ratio':>6} {'shots/s':>8} {'p50':>7} {'p95':>7} {'p99':>7}"
          f" {'acc.p99':>8} {'slow_downs':>10} {'waiting':>7}")
    for one in result["runs"]:
        t, b = one["tracemill"], one["noop_baseline"]
        print(f"{one['sessions']:>6} {t['events_per_s']:>10.0f} {b['events_per_s']:>10.0f} "
              f"{one['ratio_events_per_s_to_noop'] or 0:>6.2f} {t['screenshots_per_s'] or 0:>8.2f} "
              f"{t['p50_ms'] or 0:>7.1f} {t['p95_ms'] or 0:>7.1f} {t['p99_ms'] or 0:>7.1f}"
              f" {t['accepted_p99_ms'] or 0:>8.1f} {t['slow_downs']:>10} {t['waiting_after_drain']:>7}")
    print(f"raw upserts {result['baselines']['raw_upserts_rows_per_s']} rows/s; Pool WebP "
          f"{result['baselines']['pool_webp_frames_per_s']} frames/s; idle session "
          f"{result['idle']['bytes_per_idle_session']} bytes")
    write_result(args.output, {"benchmark": "load", **result})
    if args.output:
        plot(result, args.output.with_suffix(".png"))
    return 0
