"""Scripted fault scenarios under a streaming load: `tracemill bench faults`.

    python -m cluster.chaos run [--only shard-kill,replica-kill,...] [--smoke] [--output FILE]
    python -m cluster.chaos node-loss [--smoke] [--output FILE]       (cluster.chaos.spread)

One private stack (the same start-up as `tracemill up`: Ray, embedded PostgreSQL, Serve) whose
object store is moto's S3 server behind a fault proxy (cluster.chaos.faults.S3FaultProxy) and
whose vision provider is `openai`, pointed at a local OpenAI-compatible server with scripted
failures. Each scenario starts a resending load (cluster.chaos.resending_load), injects its
fault at a fixed point (a share of the events acked), heals it, lets the load drain, and
verifies against PostgreSQL and the object store (cluster.chaos.verify). Every step is
bounded; the process ends by itself. The node-loss scenario needs a multi-node cluster of its own, and one process
joins one Ray cluster only, so it runs in a subprocess (cluster.chaos.spread).

The moto and OpenAI-compatible servers are the shipped test doubles (cluster/doubles, moto from
the `bench` extra): real HTTP servers, not mocks, and the only S3 and OpenAI this machine may reach.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actors.ingest.shard_pool import shard_index
from cluster.chaos.faults import S3FaultProxy, kill_ingress_replica, kill_shard, wait_ready
from cluster.chaos.resending_load import ChaosLoadConfig, LoadTrack, run_chaos_load
from cluster.chaos.verify import verify, vision_outcomes
from cluster.commands import Entry
from cluster.doubles.net import free_port
from cluster.local import LocalStack
from cluster.results import write_result
from configs.settings import TracemillSettings

__all__ = ["FAULTS", "SCENARIOS", "format_table", "main", "run_scenarios"]

REPO = Path(__file__).resolve().parents[2]
# The share of all events acked when the fault is injected: mid-stream, never at the edges.
_INJECT_AT = 0.3
# What the OpenAI-compatible server answers while the vision fault lasts (one per request).
_OPENAI_FAULTS = ["429:1", "500", "timeout:3", "429:0", "500", "timeout:3", "500", "429:0"]


@dataclass
class Ctx:
    stack: LocalStack
    settings: TracemillSettings
    key: str
    proxy: S3FaultProxy
    openai: Any  # cluster.doubles.openai_server.OpenAITestServer
    smoke: bool

    def load_config(self, **over: Any) -> ChaosLoadConfig:
        size = dict(sessions=4, events=200, shots=2, deadline_s=90.0) if self.smoke else \
            dict(sessions=16, events=600, shots=4, deadline_s=240.0)
        return ChaosLoadConfig(url=self.stack.endpoint, api_key=self.key, **{**size, **over})


Injector = Callable[[Ctx, LoadTrack], Awaitable[dict[str, Any]]]


async def _inject_when(track: LoadTrack, cfg: ChaosLoadConfig, share: float, timeout_s: float) -> None:
    """Wait (bounded) until `share` of all events are acked: the fixed injection point."""
    target = int(cfg.sessions * cfg.events * share)
    deadline = time.monotonic() + timeout_s
    while track.progress() < target:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the load never reached {target} acked events (at {track.progress()})")
        await asyncio.sleep(0.05)


async def _scenario(ctx: Ctx, name: str, inject: Injector, **load: Any) -> dict[str, Any]:
    cfg = ctx.load_config(**load)
    track = LoadTrack()
    running = asyncio.create_task(run_chaos_load(cfg, track))
    try:
        await _inject_when(track, cfg, _INJECT_AT, timeout_s=cfg.deadline_s / 2)
        active = track.streaming()
        t0 = time.monotonic()
        fault = await inject(ctx, track)
        await running
    finally:
        if not running.done():
            running.cancel()
    # Measured once the load has drained: a stall is only visible once the acks resume.
    if fault.pop("events_path", True):
        back = track.recovered_at(t0, fault.pop("sessions", active))
        fault = {"recover_s": None if back is None else round(back - t0, 2),
                 "first_ack_s": _since(t0, track.first_ack_after(t0)), **fault}
    checked = await verify(track, ctx.settings, terminal_timeout_s=60 if ctx.smoke else 180)
    row = {"fault": name, **checked, **fault, "load_s": round(track.ended_at - track.started_at, 1),
           "load_timed_out": track.timed_out,
           "reconnects": sum(s.reconnects for s in track.sessions),
           "failed_requests": sum(s.failed_requests for s in track.sessions),
           "error_frames": sum(s.error_frames for s in track.sessions)}
    if name == "openai-errors":
        row["vision_calls"] = await vision_outcomes(ctx.settings, [s.sid for s in track.sessions])
    return row


def _since(t0: float, t: float | None) -> float | None:
    return None if t is None else round(t - t0, 2)


async def _shard_kill(ctx: Ctx, track: LoadTrack) -> dict[str, Any]:
    count = ctx.settings.shards.count
    index = shard_index(uuid.UUID(track.sessions[0].sid), count)
    on_shard = {s.sid for s in track.sessions if shard_index(uuid.UUID(s.sid), count) == index}
    sessions = track.streaming() & on_shard
    await asyncio.to_thread(kill_shard, ctx.settings, index)
    return {"recover_what": f"the sessions of shard {index} acking again", "sessions": sessions,
            "sessions_hit": len(sessions)}


async def _replica_kill(ctx: Ctx, track: LoadTrack) -> dict[str, Any]:
    name = await asyncio.to_thread(kill_ingress_replica)
    return {"recover_what": "every streaming session acking again", "killed": name,
            "sessions_hit": len(track.streaming())}


async def _postgres_restart(ctx: Ctx, track: LoadTrack) -> dict[str, Any]:
    assert ctx.stack.postgres is not None, "the chaos stack runs the embedded PostgreSQL"
    down_s = 3.0 if ctx.smoke else 6.0
    t0 = time.monotonic()
    await asyncio.to_thread(ctx.stack.postgres.stop)
    await asyncio.sleep(down_s)
    await asyncio.to_thread(ctx.stack.postgres.start)
    ready = await asyncio.to_thread(wait_ready, ctx.stack.endpoint, 60.0)
    return {"recover_what": f"every streaming session acking again (database down {down_s:.0f} s)",
            "readyz_s": _since(t0, ready), "fault_window_s": down_s, "sessions_hit": len(track.streaming())}


async def _objectstore(ctx: Ctx, track: LoadTrack) -> dict[str, Any]:
    window = 4.0 if ctx.smoke else 8.0
    t0 = time.monotonic()
    ctx.proxy.open_window(["500", "slowdown", "delay:2"], window)
    await asyncio.sleep(window)
    ok = track.first_shot_after(t0 + window)
    while ok is None and not all(s.done for s in track.sessions) and time.monotonic() - t0 < 60:
        await asyncio.sleep(0.1)
        ok = track.first_shot_after(t0 + window)
    return {"events_path": False, "recover_s": _since(t0, ok), "fault_window_s": window,
            "recover_what": f"first screenshot 2xx after a {window:.0f} s window of S3 500 / 503 SlowDown / 2 s stalls",
            "shots_2xx_in_window": sum(1 for s in track.sessions for w in s.shots_ok.values() if t0 < w <= t0 + window),
            "s3_faults": dict(ctx.proxy.counts)}


async def _openai_errors(ctx: Ctx, track: LoadTrack) -> dict[str, Any]:
    ctx.openai.script(list(_OPENAI_FAULTS))
    return {"events_path": False, "recover_s": None, "recover_what": f"{len(_OPENAI_FAULTS)} scripted 429/500/"
            "timeouts during finalisation; see final_status and vision_calls"}


SCENARIOS: dict[str, tuple[Injector, dict[str, Any]]] = {
    "shard-kill": (_shard_kill, {}),
    "replica-kill": (_replica_kill, {}),
    "postgres-restart": (_postgres_restart, {}),
    "objectstore-errors": (_objectstore, {"shots": 6, "frame_pause_s": 0.1}),
    "openai-errors": (_openai_errors, {}),
}


def _start_stack(state: Path, proxy_url: str, bucket: str, openai_url: str) -> tuple[LocalStack, str]:
    """`tracemill up`'s start-up with S3 behind the proxy and the openai vision provider,
    tuned so a failing provider falls back within seconds (not the production 30 s)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "RAY_ADDRESS")}
    env |= {"TRACEMILL_S3_BUCKET": bucket, "AWS_ENDPOINT_URL": proxy_url, "AWS_REGION": "us-east-1",
            "TRACEMILL_VISION_PROVIDER": "openai", "OPENAI_BASE_URL": openai_url,
            "OPENAI_API_KEY": "sk-chaos-not-a-real-key"}
    stack = LocalStack(state_dir=state, port=free_port(), num_cpus=3, env=env)
    try:
        settings = stack.start_storage()
        data = settings.to_args()
        data["processing"]["vision"] |= {"timeout_s": 2.0, "max_attempts": 2, "backoff_base_s": 0.05,
                                         "backoff_max_s": 1.0, "breaker_failures": 5, "breaker_cooldown_s": 5.0}
        stack.settings = TracemillSettings.build(data)
        key = stack.issue_keys(None)
        stack.start_ray()
        stack.deploy()
    except BaseException:
        stack.stop()
        raise
    return stack, key


def run_scenarios(names: list[str], smoke: bool) -> list[dict[str, Any]]:
    from cluster.doubles.moto_server import create_bucket, dummy_aws_env, start_moto_server
    from cluster.doubles.openai_server import OpenAITestServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request lines
    rows: list[dict[str, Any]] = []
    # The dummy credentials go into this process's environment before Ray starts, so every
    # Ray worker (ingress replicas, tasks) inherits them.
    with dummy_aws_env(), tempfile.TemporaryDirectory(prefix="tracemill-chaos-") as state, \
            OpenAITestServer() as openai:
        moto_url, stop_moto = start_moto_server()
        try:
            with S3FaultProxy(moto_url) as proxy:
                stack, key = _start_stack(Path(state), proxy.url, create_bucket(moto_url), openai.base_url)
                try:
                    assert stack.settings is not None
                    ctx = Ctx(stack, stack.settings, key, proxy, openai, smoke)
                    wait_ready(stack.endpoint, 60.0)
                    for name in names:
                        print(f"[chaos] {name} …", file=sys.stderr, flush=True)
                        inject, load = SCENARIOS[name]
                        rows.append(asyncio.run(_scenario(ctx, name, inject, **load)))
                        print(f"[chaos] {format_row(rows[-1])}", file=sys.stderr, flush=True)
                        openai.script([])
                        proxy.close_window()
                finally:
                    stack.stop()
        finally:
            stop_moto()
    return rows


def run_node_loss(smoke: bool, timeout_s: float) -> dict[str, Any]:
    """cluster.chaos.spread in a subprocess (it builds a Cluster of its own); its JSON result."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [sys.executable, "-m", "cluster.chaos.spread", "--output", out.name, *(["--smoke"] if smoke else [])]
        done = subprocess.run(cmd, cwd=REPO, timeout=timeout_s, start_new_session=True)
        text = Path(out.name).read_text()
        if not text:  # it failed before writing a result; a failed check still writes one
            raise RuntimeError(f"cluster.chaos.spread exited {done.returncode} without a result")
        return dict(json.loads(text))


_HEADER = ("fault", "acked", "lost", "duplicated", "shots 2xx", "shots missing", "finished → status", "time to recover")


def format_row(row: dict[str, Any]) -> str:
    return " | ".join(str(c) for c in _cells(row))


def _cells(row: dict[str, Any]) -> tuple[Any, ...]:
    recover = "—" if row.get("recover_s") is None else f"{row['recover_s']:.1f} s"
    if row.get("fault_window_s") is not None:
        recover += f" (window {row['fault_window_s']:.0f} s)"
    if row.get("readyz_s") is not None:
        recover += f" (/readyz {row['readyz_s']:.1f} s)"
    status = ", ".join(f"{k} {v}" for k, v in sorted(row.get("final_status", {}).items())) or "—"
    return (row["fault"], row["events_acked"], row["lost"], row["duplicated"], row.get("screenshots_acked", 0),
            row.get("screenshots_missing", 0), f"{row.get('finished', 0)} → {status}", recover)


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(_HEADER) + " |", "|" + "---|" * len(_HEADER)]
    lines += ["| " + " | ".join(str(c) for c in _cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def ok(rows: list[dict[str, Any]]) -> bool:
    return all(r["lost"] == 0 and r["duplicated"] == 0 and r.get("screenshots_missing", 0) == 0
               and r.get("stuck", 0) == 0 for r in rows)


def bench_faults(only: list[str] | None, smoke: bool, output: Path | None) -> int:
    """`tracemill bench faults`: every scenario, one table row each (node loss included)."""
    names = only or [*SCENARIOS, "node-loss"]
    unknown = set(names) - {*SCENARIOS, "node-loss"}
    if unknown:
        raise SystemExit(f"unknown fault(s): {', '.join(sorted(unknown))}")
    rows = run_scenarios([n for n in names if n != "node-loss"], smoke)
    if "node-loss" in names:
        rows.append(run_node_loss(smoke, timeout_s=300 if smoke else 600)["node_loss"])
    print(format_table(rows))
    write_result(output, {"benchmark": "faults", "smoke": smoke, "rows": rows})
    return 0 if ok(rows) else 1


def _faults_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", help="comma-separated: " + ", ".join([*SCENARIOS, "node-loss"]))
    parser.add_argument("--smoke", action="store_true", help="small N, short windows (the test suite's size)")
    parser.add_argument("--output", type=Path)


def _run_faults(args: argparse.Namespace) -> int:
    return bench_faults(args.only.split(",") if args.only else None, args.smoke, args.output)


FAULTS = Entry(_faults_arguments, _run_faults)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cluster.chaos", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    _faults_arguments(sub.add_parser("run", help="fault scenarios on one private stack (node-loss in a subprocess)"))
    from cluster.chaos import spread

    spread.add_arguments(sub.add_parser("node-loss", help="the multi-node scenario (cluster.chaos.spread)"))
    args = p.parse_args(argv)
    return spread.run(args) if args.cmd == "node-loss" else _run_faults(args)


if __name__ == "__main__":
    sys.exit(main())
