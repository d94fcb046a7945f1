"""`tracemill bench capacity` (or `python -m cluster.bench.capacity`): the README's capacity
plan computed from the measured figures in results/*.json, so the plan changes when a figure
does. Nothing is measured here; every per-core rate names the file and run it comes from.

Load per recording person: 35 events and about 3 screenshots a minute (the extension's
person-paced minute, results/extension.json, and issue 15). Each stage's rate per core is
planned at `--utilisation` (default 60 %) so bursts, retries and garbage collection fit.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["Stage", "add_arguments", "plan", "run", "stages"]

PEOPLE = (1_000, 10_000, 50_000)
EVENTS_PER_MIN = 35.0
SCREENSHOTS_PER_MIN = 3.0
# Rows a screenshot costs PostgreSQL: its insert, the compress task's update, its facts.
ROWS_PER_SCREENSHOT = 3


@dataclass(frozen=True)
class Stage:
    name: str
    runs_in: str  # "ingress replicas" | "shard actors" | "task CPUs" | "PostgreSQL cores"
    unit: str  # what per_core_per_s counts: "events" | "frames" | "sessions" | "rows"
    per_core_per_s: float
    source: str  # file, run date and key the figure comes from


def _load(folder: Path, name: str) -> dict[str, Any] | None:
    path = folder / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _when(record: dict[str, Any]) -> str:
    return str(record.get("when") or record.get("measured_at") or "?")[:10]


def _ingest_stages(folder: Path) -> list[Stage]:
    """Ingress and shard µs per event from `bench ingest --stages` (results/ingest_stages.json);
    without it, the 2026-11-22 figures the README's ingest section gives."""
    record = _load(folder, "ingest_stages")
    if record is None:
        return [Stage("ingress: parse, validate, redact", "ingress replicas", "events", 1e6 / (30 + 73),
                      "README ingest figure 2026-11-22 (~30 µs validate + ~73 µs redaction an event)"),
                Stage("shard: order, dedupe, commit, ack", "shard actors", "events", 1e6 / 68,
                      "results/load.json N=100 mixed: shard actors 36.3 % of a core at 5,355 events/s")]
    workload = record["workloads"].get("clicks with varied text") or next(iter(record["workloads"].values()))
    after, shard = workload["after"], workload.get("shard", {})
    ingress_us = sum(us for stage, us in after.items() if stage.startswith("ingress"))
    hop_us = sum(us for stage, us in after.items() if stage.startswith("actor call"))
    shard_us = next((us for stage, us in shard.items() if stage.startswith("shard:") and "CPU" in stage), None)
    where = f"results/ingest_stages.json {_when(record)}, 'clicks with varied text'"
    out = [Stage("ingress: parse, validate, redact", "ingress replicas", "events",
                 1e6 / (ingress_us + hop_us / 2), f"{where}: ingress stages + half the actor hop")]
    if shard_us:
        out.append(Stage("shard: order, dedupe, commit, ack", "shard actors", "events",
                         1e6 / (shard_us + hop_us / 2), f"{where}: shard CPU + half the actor hop"))
    return out


def _screenshot_stages(folder: Path) -> list[Stage]:
    record = _load(folder, "screenshots")
    if record is None:
        return []
    rates, cores, where = record["frames_per_s"], record.get("cores", 2), f"results/screenshots.json {_when(record)}"
    out = []
    if "pipeline_webp" in rates:  # the extension's WebP stored as uploaded (issue 15.2)
        out.append(Stage("screenshots: WebP as uploaded, whole path", "task CPUs", "frames",
                         rates["pipeline_webp"] / cores, f"{where}: pipeline_webp / {cores} cores"))
    png = rates.get("pipeline_png", rates.get("pipeline"))
    if png:
        out.append(Stage("screenshots: PNG re-encoded, whole path", "task CPUs", "frames",
                         png / cores, f"{where}: pipeline{'_png' if 'pipeline_png' in rates else ''} / {cores} cores"))
    return out


def _finalize_stage(folder: Path) -> list[Stage]:
    """Finalisation beyond compressing frames (vision, scoring, archive): a session's time from
    /finish to ready less what its frames take in the Pool: an upper bound, wall clock."""
    record = _load(folder, "finalize")
    if record is None:
        return []
    seconds = max(record["median_finish_to_final_s"] - record["pool_compress_same_frames_s"], 0.05)
    return [Stage("finalize: vision, scoring, archive", "task CPUs", "sessions", 1 / seconds,
                  f"results/finalize.json {_when(record)}: median finish→ready − Pool time of its frames "
                  f"({record['events']} events, {record['screenshots']} frames; upper bound)")]


def _newest_load(folder: Path) -> tuple[str, dict[str, Any]] | None:
    """The newest `bench load` record (load.json, load_n100.json, …) by its `when`."""
    records = [(path.name, json.loads(path.read_text())) for path in sorted(folder.glob("load*.json"))]
    records = [(name, r) for name, r in records if "baselines" in r and "before" not in name]
    return max(records, key=lambda nr: str(nr[1].get("when", ""))) if records else None


def _database_stage(folder: Path) -> list[Stage]:
    if (found := _newest_load(folder)) is None:
        return []
    name, record = found
    rows = record["baselines"]["raw_upserts_rows_per_s"]
    return [Stage("PostgreSQL: batched upserts", "PostgreSQL cores", "rows", rows / 2,
                  f"results/{name} {_when(record)}: raw asyncpg upserts {rows:,.0f} rows/s on 2 cores "
                  "shared with the client")]


def _event_path(folder: Path) -> Stage | None:
    """Events-only acks at N = 100 over the machine's cores: everything an event costs (proxy,
    replica, shard, PostgreSQL, the load generator too), the figure the stage sums understate."""
    if (found := _newest_load(folder)) is None:
        return None
    name, record = found
    if not record.get("runs"):
        return None
    run = next((r for r in record["runs"] if r["sessions"] == 100), record["runs"][0])
    rate, cores = run["tracemill_stream_only"]["events_per_s"], record.get("machine", {}).get("cpus", 2)
    return Stage("event path, whole (proxy, replica, shard, PostgreSQL, client)", "-", "events", rate / cores,
                 f"results/{name} {_when(record)}: events-only acks at N={run['sessions']}, "
                 f"{rate:,.0f} events/s / {cores} cores")


def stages(folder: Path) -> list[Stage]:
    return [*_ingest_stages(folder), *_screenshot_stages(folder), *_finalize_stage(folder), *_database_stage(folder)]


def _bytes_per_event(folder: Path) -> tuple[float, float, str]:
    """(JSON bytes an event, screenshot bytes a minute a person) from the extension's minute."""
    record = _load(folder, "extension")
    if record is None:
        return 3200.0, 150_000.0, "assumed"
    minute = record["person_paced_minute"]
    payload = minute["extension_payload_bytes"]
    return (payload["events"] / minute["events"], float(payload["screenshots"]),
            f"results/extension.json {_when(record)}: person-paced minute")


def plan(folder: Path, people: tuple[int, ...] = PEOPLE, *, utilisation: float = 0.6,
         session_minutes: float = 10.0, hours_per_day: float = 8.0) -> dict[str, Any]:
    """The load, the cores each stage needs and the database's volume at each size."""
    found = stages(folder)
    whole = _event_path(folder)
    # The stages are timed alone; the whole path costs more per event (framework, proxy,
    # scheduling). Ingress and shard cores are scaled up by that ratio, never down.
    isolated_us = sum(1e6 / s.per_core_per_s for s in found if s.runs_in in ("ingress replicas", "shard actors"))
    overhead = max(1.0, (1e6 / whole.per_core_per_s) / isolated_us) if whole and isolated_us else 1.0
    event_bytes, shot_bytes_min, bytes_source = _bytes_per_event(folder)
    webp = any(s.name.startswith("screenshots: WebP") for s in found)
    # The extension uploads WebP: with that figure the PNG row is shown, not planned for.
    summed = [s for s in found if not (webp and s.name.startswith("screenshots: PNG"))]
    sizes = []
    for n in people:
        load = {"events": n * EVENTS_PER_MIN / 60, "frames": n * SCREENSHOTS_PER_MIN / 60,
                "sessions": n / (session_minutes * 60)}
        load["rows"] = load["events"] + ROWS_PER_SCREENSHOT * load["frames"] + load["sessions"]
        cores = {s.name: load[s.unit] / (s.per_core_per_s * utilisation)
                 * (overhead if s.runs_in in ("ingress replicas", "shard actors") else 1.0) for s in found}
        by_place: dict[str, float] = {}
        for s in summed:
            by_place[s.runs_in] = by_place.get(s.runs_in, 0.0) + cores[s.name]
        seconds_a_day = hours_per_day * 3600
        sizes.append({
            "people": n, "load_per_s": {k: round(v, 1) for k, v in load.items()},
            "cores": {k: round(v, 1) for k, v in cores.items()},
            "replicas": {place: max(math.ceil(c), 1) for place, c in by_place.items()},
            "saturates_first": max(summed, key=lambda s: cores[s.name]).name if summed else None,
            "postgres": {"rows_per_s": round(load["rows"]),
                         "event_gb_per_day": round(load["events"] * event_bytes * seconds_a_day / 1e9, 1),
                         "object_store_gb_per_day": round(n * shot_bytes_min / 60 * seconds_a_day / 1e9, 1)},
        })
    return {"assumptions": {"events_per_min_per_person": EVENTS_PER_MIN,
                            "screenshots_per_min_per_person": SCREENSHOTS_PER_MIN,
                            "session_minutes": session_minutes, "hours_recorded_per_day": hours_per_day,
                            "utilisation": utilisation, "event_bytes": round(event_bytes),
                            "screenshot_bytes_per_person_minute": round(shot_bytes_min),
                            "bytes_source": bytes_source},
            "event_path": asdict(whole) if whole else None, "event_path_overhead": round(overhead, 2),
            "stages": [asdict(s) for s in found], "sizes": sizes}


def format_plan(result: dict[str, Any]) -> str:
    lines = ["| stage | runs in | per core | source |", "| --- | --- | ---: | --- |"]
    lines += [f"| {s['name']} | {s['runs_in']} | {s['per_core_per_s']:,.1f} {s['unit']}/s | {s['source']} |"
              for s in result["stages"]]
    if (whole := result["event_path"]) is not None:
        lines.append(f"| {whole['name']} | planned: ingress and shard cores × {result['event_path_overhead']} | "
                     f"{whole['per_core_per_s']:,.1f} events/s | {whole['source']} |")
    sizes = result["sizes"]
    lines += ["", "| | " + " | ".join(f"{s['people']:,} recorders" for s in sizes) + " |",
              "| --- |" + " ---: |" * len(sizes)]
    for unit in ("events", "frames", "sessions", "rows"):
        lines.append(f"| {unit}/s | " + " | ".join(f"{s['load_per_s'][unit]:,.1f}" for s in sizes) + " |")
    for st in result["stages"]:
        lines.append(f"| cores: {st['name']} | " + " | ".join(f"{s['cores'][st['name']]:,.1f}" for s in sizes) + " |")
    for place in sizes[0]["replicas"]:
        lines.append(f"| **{place}** | " + " | ".join(f"**{s['replicas'][place]:,}**" for s in sizes) + " |")
    lines.append("| PostgreSQL rows/s | " + " | ".join(f"{s['postgres']['rows_per_s']:,}" for s in sizes) + " |")
    lines.append("| event data GB/day | " + " | ".join(f"{s['postgres']['event_gb_per_day']:,}" for s in sizes) + " |")
    lines.append("| screenshots GB/day (object store) | "
                 + " | ".join(f"{s['postgres']['object_store_gb_per_day']:,}" for s in sizes) + " |")
    lines.append("| saturates first | " + " | ".join(str(s["saturates_first"]) for s in sizes) + " |")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", type=Path, default=Path("results"), help="folder of the figures")
    parser.add_argument("--utilisation", type=float, default=0.6, help="planned busy share of a core")
    parser.add_argument("--session-minutes", type=float, default=10.0)
    parser.add_argument("--hours-per-day", type=float, default=8.0, help="hours a day the recorders record")
    parser.add_argument("--output", type=Path)


def run(args: argparse.Namespace) -> int:
    from cluster.results import write_result

    if not 0 < args.utilisation <= 1:
        print("capacity: --utilisation must be in (0, 1]", file=sys.stderr)
        return 2
    result = plan(args.results, utilisation=args.utilisation, session_minutes=args.session_minutes,
                  hours_per_day=args.hours_per_day)
    print(format_plan(result))
    write_result(args.output, {"benchmark": "capacity", **result})
    return 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="python -m cluster.bench.capacity", description=__doc__)
    add_arguments(_parser)
    sys.exit(run(_parser.parse_args()))
