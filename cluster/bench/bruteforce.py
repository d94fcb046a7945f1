"""`tracemill bench bruteforce`: thousands of bad API keys from one address against a started
local stack while one well-behaved client streams events.

Measured in one run, on one private stack:
- baseline: the client streams alone (one frame in flight, `--batch` events per frame) for
  `--duration` seconds: its ack latency p50/p99;
- attack: the same client streams for the same time while `--keys` distinct well-formed
  random keys (each would cost a key lookup if nothing stopped it) are sent by `--concurrency`
  attackers: when the attacker is first answered 429 (after how many keys, how many seconds),
  how many key lookups reached the database (PostgreSQL's own count of scans of `api_keys`,
  and the ingress's `tracemill_key_lookups_total`), and the client's p99 beside its baseline.

Every client of the local stack reaches the ingress through Serve's HAProxy, so attacker and
client share one address: the client, whose key the replica has verified, streams on through
the address's backoff. Figures go to `--output` (results/bruteforce.json by convention).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np

from cluster.bench.loadgen import EventFactory
from cluster.bench.stack import private_stack
from cluster.results import write_result
from cluster.stream_client import open_stream

__all__ = ["add_arguments", "run"]

# PostgreSQL flushes a backend's table statistics within about 10 s of its last query.
_STATS_FLUSH_S = 11.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    parser.add_argument("--keys", type=int, default=5000, help="distinct bad keys the attacker sends")
    parser.add_argument("--concurrency", type=int, default=32, help="attacker requests in flight")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of streaming per phase")
    parser.add_argument("--batch", type=int, default=20, help="events per frame of the streaming client")
    parser.add_argument("--output", type=Path, help="write the figures as JSON here")


@dataclass
class Attack:
    statuses: list[int] = field(default_factory=list)
    first_429_at_s: float | None = None
    first_429_index: int | None = None
    seconds: float = 0.0


async def _stream(endpoint: str, key: str, session_id: str, batch: int, seconds: float, first_seq: int,
                  started: asyncio.Event | None = None) -> tuple[list[float], int]:
    """Frames sent one at a time for `seconds`: each ack's latency in ms, and the next seq."""
    factory, latencies, seq = EventFactory(0), [], first_seq
    ws = await open_stream(endpoint, session_id, key)
    try:
        if started is not None:
            started.set()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            sent = time.perf_counter()
            await ws.send(factory.frame(seq, batch))
            reply = await ws.recv()
            if json.loads(reply).get("type") == "ack":
                latencies.append((time.perf_counter() - sent) * 1000)
                seq += batch
            else:  # slow_down or error: the same frame again shortly (nothing of it was stored)
                await asyncio.sleep(0.05)
    finally:
        await ws.close()
    return latencies, seq


def _attack_process(endpoint: str, session_id: str, keys: int, concurrency: int) -> Attack:
    """The attack in a process of its own, so its client work does not slow the measured
    client's event loop (the machine's CPUs it still shares, as a local attacker would)."""
    return asyncio.run(_attack(endpoint, session_id, keys, concurrency))


async def _attack(endpoint: str, session_id: str, keys: int, concurrency: int) -> Attack:
    from actors.auth import generate_key  # well-formed, random: each is a lookup unless refused first

    result = Attack()
    queue: asyncio.Queue[str] = asyncio.Queue()
    for _ in range(keys):
        queue.put_nowait(generate_key())
    started = time.monotonic()

    async def attacker(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            key = queue.get_nowait()
            answer = await http.get(f"/v1/sessions/{session_id}", headers={"Authorization": f"Bearer {key}"})
            result.statuses.append(answer.status_code)
            if answer.status_code == 429 and result.first_429_at_s is None:
                result.first_429_at_s = time.monotonic() - started
                result.first_429_index = len(result.statuses)

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=endpoint, timeout=60, limits=limits) as http:
        await asyncio.gather(*(attacker(http) for _ in range(concurrency)))
    result.seconds = time.monotonic() - started
    return result


async def _api_key_scans(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow("SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) AS scans"
                                  " FROM pg_stat_user_tables WHERE relname = 'api_keys'")
        return int(row["scans"]) if row else 0
    finally:
        await conn.close()


def _lookups_metric(endpoint: str) -> dict[str, float]:
    """tracemill_key_lookups_total by result, from the replica that answers /metrics."""
    text = httpx.get(endpoint + "/metrics", timeout=30).text
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r'^tracemill_key_lookups_total\{result="(\w+)"\} (\S+)$', text, re.M)}


def _percentiles(latencies: list[float]) -> dict[str, float | int | None]:
    if not latencies:
        return {"frames": 0, "p50_ms": None, "p99_ms": None}
    values = np.array(latencies)
    return {"frames": len(latencies), "p50_ms": round(float(np.percentile(values, 50)), 2),
            "p99_ms": round(float(np.percentile(values, 99)), 2)}


async def _measure(endpoint: str, key: str, dsn: str, args: argparse.Namespace) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=endpoint, timeout=60, headers={"Authorization": f"Bearer {key}"}) as http:
        answer = await http.post("/v1/sessions", json={"type": "automated", "task": "bench bruteforce"})
        answer.raise_for_status()
        session_id = answer.json()["session_id"]
    print(f"baseline: streaming alone for {args.duration:g} s", file=sys.stderr, flush=True)
    alone, seq = await _stream(endpoint, key, session_id, args.batch, args.duration, 0)
    await asyncio.sleep(_STATS_FLUSH_S)
    scans_before, metric_before = await _api_key_scans(dsn), _lookups_metric(endpoint)
    print(f"attack: {args.keys} bad keys, {args.concurrency} in flight, while streaming", file=sys.stderr, flush=True)
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        # The attacker's process starts (and imports) before the client's clock runs.
        await loop.run_in_executor(pool, _attack_process, endpoint, session_id, 0, 1)
        streaming = asyncio.Event()
        client = asyncio.create_task(_stream(endpoint, key, session_id, args.batch, args.duration, seq, streaming))
        await streaming.wait()
        attack = await loop.run_in_executor(pool, _attack_process, endpoint, session_id, args.keys, args.concurrency)
    under_attack, _ = await client
    await asyncio.sleep(_STATS_FLUSH_S)
    scans = await _api_key_scans(dsn) - scans_before
    metric_after = _lookups_metric(endpoint)
    counts = {str(code): attack.statuses.count(code) for code in sorted(set(attack.statuses))}
    base, hit = _percentiles(alone), _percentiles(under_attack)
    return {
        "benchmark": "bruteforce",
        "params": {k: getattr(args, k) for k in ("keys", "concurrency", "duration", "batch")},
        "attacker": {
            "keys_sent": len(attack.statuses), "seconds": round(attack.seconds, 2),
            "answers": counts,
            "first_429_after_keys": attack.first_429_index,
            "first_429_after_s": None if attack.first_429_at_s is None else round(attack.first_429_at_s, 3),
            "api_keys_table_scans": scans,
            "key_lookups_metric": {k: metric_after.get(k, 0) - metric_before.get(k, 0) for k in ("unknown", "found")},
        },
        "client": {"alone": base, "under_attack": hit,
                   "p99_ratio_under_attack_to_alone": (round(hit["p99_ms"] / base["p99_ms"], 2)  # type: ignore[operator]
                                                       if base["p99_ms"] and hit["p99_ms"] else None)},
        "note": "one address for attacker and client (Serve's HAProxy); scans counted by PostgreSQL "
                "(pg_stat_user_tables, api_keys), the metric by the replica answering /metrics",
    }


def run(args: argparse.Namespace) -> int:
    with private_stack() as (stack, key):
        dsn = stack.settings.database.url.get_secret_value()
        record = asyncio.run(_measure(stack.endpoint, key, dsn, args))
    attacker, client = record["attacker"], record["client"]
    print(f"attacker: {attacker['keys_sent']} bad keys in {attacker['seconds']} s, answers {attacker['answers']}; "
          f"first 429 after {attacker['first_429_after_keys']} keys ({attacker['first_429_after_s']} s); "
          f"database lookups of api_keys: {attacker['api_keys_table_scans']} "
          f"(ingress metric: {attacker['key_lookups_metric']})")
    print(f"client ack latency p99: {client['alone']['p99_ms']} ms alone, {client['under_attack']['p99_ms']} ms "
          f"under attack (x{client['p99_ratio_under_attack_to_alone']}); p50 {client['alone']['p50_ms']} -> "
          f"{client['under_attack']['p50_ms']} ms")
    write_result(args.output, record)
    return 0 if attacker["first_429_after_keys"] is not None else 1
