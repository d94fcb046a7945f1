"""`tracemill bench encryption`: the shard's ingest throughput with encryption at rest on against
off, in the same run, on the same PostgreSQL (issue 18.5; goal ≥ 0.9×).

Encryption happens in one place on the way in, the shard's group commit (the ingress replicas
do not touch it), so the bench drives a SessionShard in this process, as `bench ingest
--stages` does: redacted frames of the load generator (50 events each; clicks whose text
differs in every event, so nothing is shared) go into `--sessions` sessions with one frame in
flight per session, and events per second are measured from the first ingest call to the last
ack. Half the sessions belong to a workspace with a data key ("on"), half to one without
("off"); each round runs both sides, in alternating order, so that drift of a shared machine
falls on both; the figure is the median of the rounds' on/off ratios (adjacent in time), with the
shard process's CPU per event beside it, which other work on the machine disturbs less. This is the
shard's throughput, the part encryption changes: end to end, the ingress's work (parsing,
validation, redaction) is added to both sides, so the end-to-end ratio is at least this one.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from cluster.results import write_result

__all__ = ["add_arguments", "run"]

GOAL = 0.9


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dsn", help="a PostgreSQL to use (default: an embedded one in a temporary directory)")
    parser.add_argument("--frames", type=int, default=200, help="frames of 50 events per side per round")
    parser.add_argument("--sessions", type=int, default=20, help="sessions per side, one frame in flight each")
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--output", type=Path, help="write the figures as JSON (results/encryption.json)")


async def _side(shard: Any, org: uuid.UUID, batches: list[tuple[uuid.UUID, Any]], sessions: int) -> tuple[float, float]:
    """(events per second of wall time, µs of this process's CPU per event)."""
    from cluster.bench.ingest_stages import _until_taken

    events = sum(len(b.events) for _, b in batches)
    cpu, started = time.process_time(), time.perf_counter()
    for start in range(0, len(batches), sessions):
        await asyncio.gather(*(_until_taken(shard, sid, b, org) for sid, b in batches[start:start + sessions]))
    return events / (time.perf_counter() - started), (time.process_time() - cpu) / events * 1e6


def _batches(settings: Any, frames: list[str], sids: list[uuid.UUID], first_seq: int) -> list[tuple[uuid.UUID, Any]]:
    from actors.ingest.frames import validate_frame
    from actors.privacy.redact import Redactor
    from actors.privacy.write_path import redact_batch

    redactor = Redactor(settings.processing.privacy)
    out = []
    for i, frame in enumerate(frames):
        rows = validate_frame(frame, settings.ingest)
        assert rows is not None
        seq0 = first_seq + (i // len(sids)) * len(rows)
        out.append((sids[i % len(sids)], redact_batch(redactor, [r._replace(seq=seq0 + k) for k, r in enumerate(rows)])))
    return out


async def _measure(dsn: str, args: argparse.Namespace, state: Path) -> dict[str, Any]:
    import asyncpg

    from actors.crypto.keyring import install
    from actors.ingest.shard import SessionShard
    from actors.storage.postgres import apply_migrations
    from cluster.bench.ingest_stages import varied_frames
    from configs.settings import TracemillSettings

    await apply_migrations(dsn)
    kek = base64.b64encode(os.urandom(32)).decode()
    settings = TracemillSettings.from_env(
        {"DATABASE_URL": dsn, "TRACEMILL_ENCRYPTION_KEK": kek, "TRACEMILL_ENCRYPTION_SCOPE": "keyed",
         "TRACEMILL_LOG_LEVEL": "WARNING"},
        {"object_store": {"local_dir": str(state / "objects")}})
    conn = await asyncpg.connect(dsn)
    orgs = {"off": uuid.uuid4(), "on": uuid.uuid4()}
    for side, org in orgs.items():
        await conn.execute("INSERT INTO organizations (org_id, name) VALUES ($1, $2)", org, f"bench-enc-{side}-{org}")
    workspace_on = await conn.fetchval("SELECT workspace_id FROM workspaces WHERE org_id = $1", orgs["on"])
    keyring = install(settings.encryption)
    assert keyring is not None
    await keyring.create_key(conn, workspace_on)
    shard = SessionShard(0, settings)
    sids = {side: [uuid.uuid4() for _ in range(args.sessions)] for side in orgs}
    for side, org in orgs.items():
        for sid in sids[side]:
            await shard.create_session(org, sid, {"type": "automated"}, b"h" * 32)
    frames = varied_frames(args.frames)
    per_round = (args.frames // args.sessions + 1) * 50
    rates: dict[str, list[float]] = {"off": [], "on": []}
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    ratios: list[float] = []
    for r in range(args.rounds):
        for side in (("off", "on") if r % 2 == 0 else ("on", "off")):
            batches = _batches(settings, frames, sids[side], r * per_round)
            rate, us = await _side(shard, orgs[side], batches, args.sessions)
            rates[side].append(rate)
            cpu[side].append(us)
        ratios.append(rates["on"][-1] / rates["off"][-1])
        print(f"round {r + 1}: off {rates['off'][-1]:,.0f} events/s ({cpu['off'][-1]:.0f} µs CPU/event), "
              f"on {rates['on'][-1]:,.0f} events/s ({cpu['on'][-1]:.0f} µs CPU/event): {ratios[-1]:.2f}", flush=True)
    encrypted = await conn.fetchval(
        "SELECT count(*) FROM interactions i JOIN sessions s USING (session_id)"
        " WHERE s.org_id = $1 AND i.payload ? '$enc' AND i.url IS NULL", orgs["on"])
    await conn.close()
    off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
    cpu_off, cpu_on = statistics.median(cpu["off"]), statistics.median(cpu["on"])
    return {"off_events_per_s": round(off), "on_events_per_s": round(on),
            "ratio": round(statistics.median(ratios), 3), "ratio_of_medians": round(on / off, 3),
            "shard_cpu_us_per_event_off": round(cpu_off, 1), "shard_cpu_us_per_event_on": round(cpu_on, 1),
            "cpu_ratio": round(cpu_off / cpu_on, 3),
            "goal": GOAL, "rounds": args.rounds, "events_per_side_per_round": args.frames * 50,
            "encrypted_rows_checked": int(encrypted)}


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="tm-bench-enc-") as tmp:
        if args.dsn:
            result = asyncio.run(_measure(args.dsn, args, Path(tmp)))
        else:
            from cluster.embedded_postgres import EmbeddedPostgres

            pg = EmbeddedPostgres(Path(tmp) / "pg")
            try:
                result = asyncio.run(_measure(pg.start(), args, Path(tmp)))
            finally:
                pg.stop()
    verdict = "meets" if result["ratio"] >= GOAL else "misses"
    print(f"shard ingest, {result['rounds']} paired rounds: median on/off = {result['ratio']:.3f} ({verdict} the "
          f"goal ≥ {GOAL}); medians off {result['off_events_per_s']:,} events/s, on {result['on_events_per_s']:,} "
          f"events/s; shard CPU per event off {result['shard_cpu_us_per_event_off']} µs, on "
          f"{result['shard_cpu_us_per_event_on']} µs (off/on = {result['cpu_ratio']:.3f})")
    write_result(args.output, {"benchmark": "encryption", **result})
    return 0
