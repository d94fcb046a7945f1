"""`tracemill bench ingest|screenshots|finalize|dataset`: figures as ratios to baselines from the same run.

The ingest figure:

It starts a private local stack (the same start-up as `tracemill up`, in a temporary state
directory), deploys the no-op WebSocket app beside the real one, drives the same load at
both, alternating rounds so that drift on a noisy machine hits both alike, and prints
acked events/s and ack latency with the real/baseline ratio. `--output FILE` writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ray import serve

from cluster.bench.loadgen import LoadConfig, LoadResult, format_comparison, run_load
from cluster.local import LocalStack
from serve_app.noop import build_noop_app

__all__ = ["main"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tracemill bench", description=__doc__)
    sub = parser.add_subparsers(dest="which", required=True)
    ingest = sub.add_parser("ingest", help="WebSocket ingest vs a no-op Serve endpoint")
    ingest.add_argument("--sessions", type=int, default=100)
    ingest.add_argument("--batch", type=int, default=50)
    ingest.add_argument("--duration", type=float, default=15.0, help="measured seconds per round")
    ingest.add_argument("--warmup", type=float, default=3.0)
    ingest.add_argument("--rounds", type=int, default=2, help="alternating baseline/real rounds")
    ingest.add_argument("--output", type=Path, help="write the figures as JSON here")
    shots = sub.add_parser("screenshots", help="screenshot processing vs a multiprocessing.Pool")
    shots.add_argument("--frames", type=int, default=60)
    shots.add_argument("--rounds", type=int, default=3)
    shots.add_argument("--output", type=Path)
    final = sub.add_parser("finalize", help="finalisation time of a 200-event, 40-screenshot session")
    final.add_argument("--sessions", type=int, default=3)
    final.add_argument("--output", type=Path)
    load = sub.add_parser("load", help="mixed load at N open sessions vs no-op Serve, raw upserts, Pool")
    load.add_argument("--sessions", default="10,100,1000", help="comma-separated N values")
    load.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    load.add_argument("--warmup", type=float, default=3.0)
    load.add_argument("--output", type=Path, help="JSON; the plot goes beside it as .png")
    faults = sub.add_parser("faults", help="scripted faults under a streaming load: acked, lost, duplicated, recovery")
    faults.add_argument("--only", help="comma-separated fault names (see python -m cluster.chaos run --help)")
    faults.add_argument("--smoke", action="store_true", help="small N and short windows")
    faults.add_argument("--output", type=Path)
    spread = sub.add_parser("spread", help="tasks on every node of a 3-node cluster; shards after a node is removed")
    spread.add_argument("--smoke", action="store_true")
    spread.add_argument("--output", type=Path)
    dataset = sub.add_parser("dataset", help="dataset build examples/s: 1 and 2 CPUs, ray job submit")
    dataset.add_argument("--sessions", type=int, default=200)
    dataset.add_argument("--events", type=int, default=120, help="events per seeded session")
    dataset.add_argument("--output", type=Path)
    bad = sub.add_parser("badinput", help="the bad-input corpus and schemathesis: every answer 4xx, none 5xx")
    bad.add_argument("--max-examples", type=int, default=25, help="schemathesis examples per operation and mode")
    bad.add_argument("--fuzz-deadline", type=float, default=300.0, help="schemathesis wall-clock bound, seconds")
    bad.add_argument("--output", type=Path)
    return parser.parse_args(argv)


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


def _bench_ingest(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="tracemill-bench-") as state:
        stack = LocalStack(Path(state), port=_free_port())
        try:
            key = stack.start()
            serve.run(build_noop_app(), name="noop", route_prefix="/noop")
            baseline, real = asyncio.run(_rounds(stack.endpoint, key, args))
        finally:
            stack.stop()
    base, mine = _median(baseline), _median(real)
    print(format_comparison(mine, base))
    if args.output:
        _write(args.output, args, baseline, real, base, mine)
    return 0 if mine.errors == 0 and mine.ack_mismatches == 0 else 1


def _write(path: Path, args: argparse.Namespace, baseline: list[LoadResult], real: list[LoadResult],
           base: LoadResult, mine: LoadResult) -> None:
    record: dict[str, Any] = {
        "benchmark": "ingest",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "params": {k: v for k, v in vars(args).items() if k not in ("output", "which")},
        "ratio_events_per_s": mine.events_per_s / base.events_per_s if base.events_per_s else None,
        "ratio_p99": (mine.latency_p99_ms or 0) / base.latency_p99_ms if base.latency_p99_ms else None,
        "baseline_events_per_s_rounds": [r.events_per_s for r in baseline],
        "real_events_per_s_rounds": [r.events_per_s for r in real],
        "spread_real_events_per_s": statistics.pstdev([r.events_per_s for r in real]),
        "baseline": base.model_dump(mode="json"),
        "real": mine.model_dump(mode="json"),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}", file=sys.stderr)


def _bench_processing(args: argparse.Namespace) -> int:
    from cluster.bench import processing as bp

    with tempfile.TemporaryDirectory(prefix="tracemill-bench-") as state:
        stack = LocalStack(Path(state), port=_free_port())
        try:
            key = stack.start()
            if args.which == "screenshots":
                result = bp.bench_screenshots(stack, key, args.frames, args.rounds)
                rate = result["frames_per_s"]
                print(f"frames/s  pool {rate['pool']:.1f}  ray tasks {rate['ray_tasks']:.1f}"
                      f" (ratio {result['ratio_ray_tasks_to_pool']:.2f})  whole path {rate['pipeline']:.1f}"
                      f" (ratio {result['ratio_pipeline_to_pool']:.2f})")
            else:
                result = bp.bench_finalize(stack, key, args.sessions)
                print(f"200 events + 40 screenshots: /finish → final status {result['median_finish_to_final_s']:.2f} s"
                      f" (median), first upload → final status {result['median_first_upload_to_final_s']:.2f} s;"
                      f" the same 40 frames in the Pool alone: {result['pool_compress_same_frames_s']:.2f} s")
        finally:
            stack.stop()
    result |= {"benchmark": args.which, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    bp.write_result(args.output, result)
    return 0


def _bench_load(args: argparse.Namespace) -> int:
    from cluster.bench.load import bench_load, plot
    from cluster.bench.processing import write_result

    ns = sorted({int(n) for n in args.sessions.split(",") if n.strip()})
    with tempfile.TemporaryDirectory(prefix="tracemill-bench-") as state:
        stack = LocalStack(Path(state), port=_free_port())
        try:
            key = stack.start()
            serve.run(build_noop_app(), name="noop", route_prefix="/noop")
            result = bench_load(stack, key, ns, args.duration, args.warmup)
        finally:
            stack.stop()
    print(f"{'N':>6} {'events/s':>10} {'no-op':>10} {'ratio':>6} {'shots/s':>8} {'p50':>7} {'p95':>7} {'p99':>7}")
    for run in result["runs"]:
        t, b = run["tracemill"], run["noop_baseline"]
        print(f"{run['sessions']:>6} {t['events_per_s']:>10.0f} {b['events_per_s']:>10.0f} "
              f"{run['ratio_events_per_s_to_noop'] or 0:>6.2f} {t['screenshots_per_s'] or 0:>8.2f} "
              f"{t['p50_ms'] or 0:>7.1f} {t['p95_ms'] or 0:>7.1f} {t['p99_ms'] or 0:>7.1f}")
    print(f"raw upserts {result['baselines']['raw_upserts_rows_per_s']} rows/s; Pool WebP "
          f"{result['baselines']['pool_webp_frames_per_s']} frames/s; idle session "
          f"{result['idle']['bytes_per_idle_session']} bytes")
    result |= {"benchmark": "load", "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    write_result(args.output, result)
    if args.output:
        plot(result, args.output.with_suffix(".png"))
    return 0


def _bench_dataset(args: argparse.Namespace) -> int:
    from cluster.bench.dataset import bench_dataset
    from cluster.bench.processing import write_result

    result = bench_dataset(args.sessions, args.events)
    rows = [("one process, no Ray", result["baseline_one_process"]["examples_per_s"], 1.0),
            *((f"Ray tasks, {c} CPU", result[f"ray_{c}_cpu"]["examples_per_s"], result["ratio_to_baseline"][f"ray_{c}_cpu"])
              for c in (1, 2)),
            ("ray job submit, 2 CPU", result["ray_job_submit"]["examples_per_s"], result["ratio_to_baseline"]["ray_job_submit"])]
    for name, rate, ratio in rows:
        print(f"{name:<24} {rate:>9.1f} examples/s  {ratio:.2f}x")
    result |= {"benchmark": "dataset", "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
    write_result(args.output, result)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parse(list(sys.argv[1:] if argv is None else argv))
    if args.which == "ingest":
        return _bench_ingest(args)
    if args.which == "dataset":
        return _bench_dataset(args)
    if args.which in ("faults", "spread"):  # cluster.chaos.run: own stacks, own Cluster (subprocess)
        from cluster.chaos import run as chaos

        flags = [*(["--smoke"] if args.smoke else []), *(["--output", str(args.output)] if args.output else [])]
        if args.which == "spread":
            return chaos.main(["node-loss", *flags])
        return chaos.main(["run", *(["--only", args.only] if args.only else []), *flags])
    if args.which == "load":
        return _bench_load(args)
    if args.which == "badinput":
        from cluster.badinput.bench import bench_bad_input

        return bench_bad_input(args)
    return _bench_processing(args)


if __name__ == "__main__":
    sys.exit(main())
