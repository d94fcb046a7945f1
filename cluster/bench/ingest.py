"""`tracemill bench ingest`: the ingest figure, as ratios to a baseline from the same run.

It starts a private local stack (the same start-up as `tracemill up`, in a temporary state
directory), deploys the no-op WebSocket app beside the real one, drives the same load at
both, alternating rounds so that drift on a noisy machine hits both alike, and prints
acked events/s and ack latency with the real/baseline ratio. `--output FILE` writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path
from typing import Any

from cluster.bench.loadgen import LoadConfig, LoadResult, format_comparison, run_load
from cluster.bench.stack import private_stack
from cluster.results import write_result

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds per round")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2, help="alternating baseline/real rounds")
    parser.add_argument("--output", type=Path, help="write the figures as JSON here")
    parser.add_argument("--stages", type=Path, metavar="FILE",
                        help="also measure µs per event of each stage, before and after one parse per "
                             "event (cluster/bench/ingest_stages.py), and write them here as JSON")


def _stages(settings: Any, path: Path) -> None:
    from cluster.bench import ingest_stages as stages

    print("stages: CPU per event, in this process", file=sys.stderr, flush=True)
    table: dict[str, Any] = {}
    for name, frames in (("load generator clicks", stages.load_frames(200)),
                         ("clicks with varied text", stages.varied_frames(200))):
        table[name] = stages.cpu_stages(frames, settings.ingest)
    print("stages: a shard in-process against the stack's PostgreSQL", file=sys.stderr, flush=True)
    shard = stages.shard_stages(settings, stages.load_frames(400))
    for result in table.values():
        result["shard"] = shard
    print(stages.format_stages(table))
    write_result(path, {"benchmark": "ingest_stages", "unit": "µs per event", "workloads": table,
                        "note": stages.__doc__})


def _median(results: list[LoadResult]) -> LoadResult:
    """The round with the median events/s stands for its target."""
    ordered = sorted(results, key=lambda r: r.events_per_s)
    return ordered[len(ordered) // 2]


async def _rounds(endpoint: str, key: str, args: argparse.Namespace) -> tuple[list[LoadResult], list[LoadResult]]:
    baseline: list[LoadResult] = []
    real: list[LoadResult] = []
    for round_no in range(1, args.rounds + 1):
        for prefix, sink in (("/noop", baseline), ("", real)):
            name = "baseline (no-op Serve WebSocket)" if prefix else "tracemill ingest"
            print(f"round {round_no}/{args.rounds}: {name}", file=sys.stderr, flush=True)
            cfg = LoadConfig(
                url=endpoint, api_key=key, prefix=prefix, sessions=args.sessions, batch=args.batch,
                duration_s=args.duration, warmup_s=args.warmup,
            )
            sink.append(await run_load(cfg))
    return baseline, real


def run(args: argparse.Namespace) -> int:
    with private_stack(noop=True) as (stack, key):
        if args.stages is not None:
            _stages(stack.settings, args.stages)
        baseline, real = asyncio.run(_rounds(stack.endpoint, key, args))
    base, mine = _median(baseline), _median(real)
    print(format_comparison(mine, base))
    record: dict[str, Any] = {
        "benchmark": "ingest",
        "params": {k: getattr(args, k) for k in ("sessions", "batch", "duration", "warmup", "rounds")},
        "ratio_events_per_s": mine.events_per_s / base.events_per_s if base.events_per_s else None,
        "ratio_p99": (mine.latency_p99_ms or 0) / base.latency_p99_ms if base.latency_p99_ms else None,
        "baseline_events_per_s_rounds": [r.events_per_s for r in baseline],
        "real_events_per_s_rounds": [r.events_per_s for r in real],
        "spread_real_events_per_s": statistics.pstdev([r.events_per_s for r in real]),
        "baseline": base.model_dump(mode="json"),
        "real": mine.model_dump(mode="json"),
    }
    write_result(args.output, record)
    return 0 if mine.errors == 0 and mine.ack_mismatches == 0 else 1
