"""`tracemill bench dataset`: a whole dataset build (examples with their screenshots embedded
as data URLs, the files written and uploaded) on Ray with 1 and 2 CPUs and through `ray job
submit`, against the same build in one plain process, no Ray (`run_build(one_process=True)`,
the baseline, measured in the same run). Each build's files are compared byte for byte with the
baseline's, and the driver's peak memory is sampled beside the size of what it wrote.

Sessions are seeded straight into PostgreSQL (same schema as ingest writes, marked `ready`) with
WebP frames in the object store: the figure is the build's, not ingest's. Every seeded session
differs (products, queries, pages), so deduplication removes next to nothing and every example
is real work.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import logging
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import ray
from PIL import Image

from actors.auth import DEFAULT_ORG_ID
from actors.settings_registry import dashboard_url, publish_settings
from actors.storage.objectstore import make_object_store
from configs.secrets import write_secrets_file
from actors.storage.postgres import apply_migrations, connect_pool, json_dumps
from cluster.bench.frames import synthetic_page
from cluster.embedded_postgres import EmbeddedPostgres
from cluster.local import LOCAL_RAY_ENV, use_free_agent_port
from configs.dataset import DatasetBuildConfig
from configs.settings import TracemillSettings
from actors.training.dataset.build import BuildResult, run_build
from serve_app import ray_jobs

__all__ = ["add_arguments", "bench_dataset", "run"]

_COLUMNS = ("session_id", "seq", "type", "ts", "url", "target", "payload", "session_month")


def _progress(text: str) -> None:
    print(f"[bench dataset] {text}", file=sys.stderr, flush=True)


def _element(name: str, y: int) -> dict[str, Any]:
    return {"tag": "button", "text": name, "attributes": {"data-testid": name.lower().replace(" ", "-")},
            "selectors": [{"kind": "testid", "value": name.lower().replace(" ", "-"), "unique": True},
                          {"kind": "text", "value": name, "unique": True}],
            "bbox": {"x": 600, "y": y, "width": 140, "height": 32}}


def _session_events(index: int, n: int, t0: datetime) -> list[tuple[Any, ...]]:
    """A varied shopping session: navigations, searches, clicks on products, a checkout field."""
    rows = []
    for seq in range(n):
        product = f"Product {index}-{seq % 13}"
        url = f"https://shop.example/c/{index % 17}/p/{seq // 10}"
        kind = ("navigation", "input", "click", "click", "dom_snapshot", "click", "input", "submit",
                "scroll", "click")[seq % 10]
        target, payload = None, {}
        if kind == "navigation":
            payload = {"title": f"Shop {index}", "transition": "typed" if seq % 20 == 0 else "link"}
        elif kind == "input":
            target, payload = _element("Search", 80), {"value": f"query {index} {seq}"}
        elif kind in ("click", "submit"):
            target = _element(product, 200 + (seq % 13) * 40)
        elif kind == "dom_snapshot":
            payload = {"elements": [_element(f"Product {index}-{k}", 200 + k * 40) for k in range(8)]}
        else:
            payload = {"x": 0, "y": seq * 20}
        rows.append((seq, kind, t0 + timedelta(milliseconds=seq * 600), url,
                     None if target is None else json_dumps(target), json_dumps(payload)))
    return rows


def _frames(count: int) -> list[bytes]:
    """Distinct 1280x800 WebP frames (q80, as the compress task stores them), reused by the
    sessions in turn."""
    frames = []
    for i in range(count):
        out = io.BytesIO()
        Image.open(io.BytesIO(synthetic_page(i))).save(out, format="WEBP", quality=80, method=4)
        frames.append(out.getvalue())
    return frames


async def _seed(settings: TracemillSettings, sessions: int, events: int, shot_every: int, task: str) -> int:
    """The sessions, and a frame every `shot_every` events of each; the frames' bytes."""
    pool = await connect_pool(settings.database)
    store = make_object_store(settings.object_store)
    frames = _frames(24) if shot_every else []
    stored = 0
    try:
        now = datetime.now(UTC)
        for i in range(sessions):
            sid = uuid.uuid4()
            shots = list(range(1, events, shot_every)) if shot_every else []
            await pool.execute(
                "INSERT INTO sessions (session_id, org_id, type, status, task, request_hash, started_at,"
                " quality_overall, event_count, screenshot_count, created_at)"
                " VALUES ($1, $2, 'human', 'ready', $3, '\\x00', $4, $5, $6, $7, $4)",
                sid, DEFAULT_ORG_ID, task, now, 0.5 + (i % 50) / 100, events, len(shots))
            month = now.date().replace(day=1)  # the partition key: the session's creation month (0021)
            records = [(sid, *row, month) for row in _session_events(i, events, now)]
            await pool.copy_records_to_table("interactions", records=records, columns=_COLUMNS)
            for k, seq in enumerate(shots):
                frame = frames[(i * 7 + k) % len(frames)]
                key = f"screenshots/{DEFAULT_ORG_ID}/{sid}/{seq}.webp"
                await store.put(key, frame, "image/webp")
                await pool.execute(
                    "INSERT INTO screenshots (session_id, screenshot_id, seq, content_type, webp_key,"
                    " bytes, width, height, sha256, status) VALUES ($1, $2, $3, 'image/webp', $4, $5,"
                    " 1280, 800, $6, 'compressed')",
                    sid, f"s{seq}", seq, key, len(frame), hashlib.sha256(frame).hexdigest())
                stored += len(frame)
    finally:
        await store.close()
        await pool.close()
    return stored


@contextmanager
def _peak_rss() -> Iterator[dict[str, float]]:
    """This process's resident memory sampled every 10 ms: MiB at the start and the peak."""
    page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page

    out = {"start_mib": rss() / 2**20, "peak_mib": 0.0}
    peak, stop = [rss()], threading.Event()

    def sample() -> None:
        while not stop.wait(0.01):
            peak[0] = max(peak[0], rss())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        stop.set()
        thread.join()
        out["peak_mib"] = max(peak[0], rss()) / 2**20
        out["growth_mib"] = round(out["peak_mib"] - out["start_mib"], 1)
        out["start_mib"], out["peak_mib"] = round(out["start_mib"], 1), round(out["peak_mib"], 1)


async def _digests(settings: TracemillSettings, result: BuildResult) -> dict[str, str]:
    """sha256 of each file as stored (read back), the report left out: it holds the timings."""
    store = make_object_store(settings.object_store)
    try:
        return {name: hashlib.sha256(await store.get(f["key"])).hexdigest()
                for name, f in result.files.items() if name != "report.json"}
    finally:
        await store.close()


def _measured(settings: TracemillSettings, build: Callable[[], BuildResult]) -> dict[str, Any]:
    with _peak_rss() as memory:
        started = time.monotonic()
        result = build()
        seconds = time.monotonic() - started
    examples = result.report["examples"]["train"] + result.report["examples"]["validation"]
    return {"examples": examples, "seconds": round(seconds, 3), "examples_per_s": round(examples / seconds, 1),
            "tasks": result.report["build"]["tasks"], "driver_memory": memory,
            # Until the files are written (the rest is the upload and the database rows); where
            # those seconds went: in the tasks by phase (their CPU too), the driver waiting, writing.
            "build_seconds": result.report["build"]["seconds"],
            "seconds_spent": result.report["build"].get("seconds_spent"),
            "files_bytes": sum(f["bytes"] for f in result.files.values()),
            "digests": asyncio.run(_digests(settings, result))}


def _one_process(settings: TracemillSettings, config: DatasetBuildConfig) -> dict[str, Any]:
    return _measured(settings, lambda: asyncio.run(run_build(
        settings, config, uuid.uuid4(), DEFAULT_ORG_ID, "bench", one_process=True)))


def _ray_build(settings: TracemillSettings, config: DatasetBuildConfig, cpus: int) -> dict[str, Any]:
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, logging_level=logging.WARNING,
             log_to_driver=False)
    try:
        return _measured(settings, lambda: asyncio.run(run_build(
            settings, config, uuid.uuid4(), DEFAULT_ORG_ID, "bench")))
    finally:
        ray.shutdown()


def _job_submit_build(settings: TracemillSettings, config: DatasetBuildConfig, folder: Path) -> dict[str, Any]:
    from ray.job_submission import JobStatus, JobSubmissionClient

    path = folder / "bench-dataset.yaml"
    path.write_text(json.dumps(config.model_dump(mode="json")))  # JSON is YAML
    use_free_agent_port()
    ray.init(address="local", num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1",
             logging_level=logging.WARNING, log_to_driver=False)
    try:
        publish_settings(settings, str(write_secrets_file(folder / "secrets.json", settings.secret_values())))
        client = JobSubmissionClient(dashboard_url())
        # The API's own submission: it waits for the node's job agent and names this cluster.
        job = asyncio.run(ray_jobs.submit(f"bench-dataset-{uuid.uuid4()}", "jobs.build_dataset",
                                          ["--config", str(path)]))
        submitted = time.monotonic()
        while (status := client.get_job_status(job)) not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            time.sleep(0.2)
        seconds = time.monotonic() - submitted
        if status != JobStatus.SUCCEEDED:
            raise RuntimeError(f"the bench job ended {status}: {client.get_job_logs(job)[-2000:]}")
    finally:
        ray.shutdown()
    return {"seconds_submit_to_succeeded": round(seconds, 3)}


def bench_dataset(sessions: int, events: int, shot_every: int, rounds: int) -> dict[str, Any]:
    # As the local stack runs them: Ray's default nice 15 starves the workers whenever anything
    # else on the machine wants a core, and the one-process baseline runs at nice 0.
    os.environ.update(LOCAL_RAY_ENV)
    with tempfile.TemporaryDirectory(prefix="tracemill-bench-dataset-") as tmp:
        folder = Path(tmp)
        pg = EmbeddedPostgres(folder / "pgdata")
        try:
            dsn = pg.start()
            asyncio.run(apply_migrations(dsn))
            settings = TracemillSettings.build({"database": {"url": dsn}, "object_store": {
                "kind": "local", "local_dir": str(folder / "objects")}})
            task = f"bench {uuid.uuid4().hex[:8]}"
            _progress(f"seeding {sessions} sessions x {events} events, a frame every {shot_every} events")
            frame_bytes = asyncio.run(_seed(settings, sessions, events, shot_every, task))
            config = DatasetBuildConfig.build({
                "name": "bench", "selection": {"task_contains": task}, "task_num_cpus": 1,
                "format": {"image_mode": "data_url" if shot_every else "none", "max_images_per_example": 1}})
            # Rounds alternate the ways of building, so load from other work on the machine
            # falls on all of them; the median round of each is reported.
            rounds_seen: dict[str, list[dict[str, Any]]] = {"one_process": [], "ray_1_cpu": [], "ray_2_cpu": []}
            for r in range(rounds):
                _progress(f"round {r + 1}/{rounds}: one process, no Ray")
                rounds_seen["one_process"].append(_one_process(settings, config))
                for cpus in (1, 2):
                    _progress(f"round {r + 1}/{rounds}: Ray tasks on {cpus} CPU(s)")
                    rounds_seen[f"ray_{cpus}_cpu"].append(_ray_build(settings, config, cpus))
            _progress("ray job submit on 2 CPUs")
            job = _job_submit_build(settings, config, folder)
        finally:
            pg.stop()
    runs = {name: _median(seen) for name, seen in rounds_seen.items()}
    baseline = runs.pop("one_process")
    reference = baseline["digests"]
    identical = all(run["digests"] == reference for seen in rounds_seen.values() for run in seen)
    for run in [baseline, *runs.values()]:
        run.pop("digests")
    job["examples_per_s"] = round(baseline["examples"] / job["seconds_submit_to_succeeded"], 1)
    ratio = {name: round(r["examples_per_s"] / baseline["examples_per_s"], 2) for name, r in runs.items()}
    ratio["ray_job_submit"] = round(job["examples_per_s"] / baseline["examples_per_s"], 2)
    return {"sessions": sessions, "events_per_session": events, "frame_every_events": shot_every,
            "frames_stored_bytes": frame_bytes, "rounds": rounds, "baseline_one_process": baseline, **runs,
            "ray_job_submit": job, "ratio_to_baseline": ratio, "files_identical_to_one_process": identical,
            "rounds_seconds": {name: [r["seconds"] for r in seen] for name, seen in rounds_seen.items()},
            "note": "every run is the whole build (selection, examples with data-URL frames, dedupe, "
                    "rule check, report and plot, files written and uploaded to the local object store); "
                    "driver_memory is the driver process's RSS sampled every 10 ms; job submit includes "
                    "the driver's start (interpreter, imports, ray.init)"}


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sessions", type=int, default=60)
    parser.add_argument("--events", type=int, default=120, help="events per seeded session")
    parser.add_argument("--frame-every", type=int, default=20,
                        help="a WebP frame every N events of a session (0: text only)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--output", type=Path)


def run(args: argparse.Namespace) -> int:
    """`tracemill bench dataset`: one line per way of building, with its ratio to the baseline."""
    from cluster.results import write_result

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="[bench dataset] %(message)s")
    logging.getLogger("tracemill.jobs.dataset").setLevel(logging.INFO)  # the build's progress lines
    result = bench_dataset(args.sessions, args.events, args.frame_every, args.rounds)
    ratio = result["ratio_to_baseline"]
    rows = [("one process, no Ray", result["baseline_one_process"], 1.0),
            *((f"Ray tasks, {c} CPU", result[f"ray_{c}_cpu"], ratio[f"ray_{c}_cpu"]) for c in (1, 2))]
    for name, r, times in rows:
        print(f"{name:<24} {r['examples_per_s']:>9.1f} examples/s  {times:.2f}x  "
              f"driver peak +{r['driver_memory']['growth_mib']:.0f} MiB of {r['files_bytes'] / 2**20:.0f} MiB written")
    for name, key in (("one process", "baseline_one_process"), ("Ray 1 CPU", "ray_1_cpu"), ("Ray 2 CPUs", "ray_2_cpu")):
        spent = result[key]["seconds_spent"] or {}
        print(f"  {name}: build {result[key]['build_seconds']:.1f} s of {result[key]['seconds']:.1f} s; "
              + ", ".join(f"{k} {v:.1f}" for k, v in spent.items()))
    print(f"{'ray job submit, 2 CPU':<24} {result['ray_job_submit']['examples_per_s']:>9.1f} examples/s  "
          f"{ratio['ray_job_submit']:.2f}x")
    print(f"files identical to the one-process build: {result['files_identical_to_one_process']}")
    write_result(args.output, {"benchmark": "dataset", **result})
    return 0
