"""`tracemill bench dataset`: dataset build throughput (examples/s) with 1 and 2 CPUs and
through `ray job submit`, against the same example-building loop in one process, no Ray
(the baseline, measured in the same run).

Sessions are seeded straight into PostgreSQL (same schema as ingest writes, marked `ready`):
the figure is the build's, not ingest's. Every seeded session differs (products, queries,
pages), so deduplication removes next to nothing and every example is real work.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import ray

from actors.auth import DEFAULT_ORG_ID
from actors.ingest.rows import as_event
from actors.settings_registry import dashboard_url, publish_settings
from configs.secrets import write_secrets_file
from actors.storage.postgres import apply_migrations, connect_pool, json_dumps
from actors.storage.processing_repo import event_rows
from actors.storage.training_repo import select_sessions
from cluster.embedded_postgres import EmbeddedPostgres
from cluster.local import use_free_agent_port
from configs.dataset import DatasetBuildConfig
from configs.settings import TracemillSettings
from actors.training.dataset.build import run_build
from actors.training.dataset.formats import build_examples
from serve_app import ray_jobs

__all__ = ["add_arguments", "bench_dataset", "run"]

_COLUMNS = ("session_id", "seq", "type", "ts", "url", "target", "payload")


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


async def _seed(settings: TracemillSettings, sessions: int, events: int, task: str) -> None:
    pool = await connect_pool(settings.database)
    try:
        now = datetime.now(UTC)
        for i in range(sessions):
            sid = uuid.uuid4()
            await pool.execute(
                "INSERT INTO sessions (session_id, org_id, type, status, task, request_hash, started_at,"
                " quality_overall, event_count) VALUES ($1, $2, 'human', 'ready', $3, '\\x00', $4, $5, $6)",
                sid, DEFAULT_ORG_ID, task, now, 0.5 + (i % 50) / 100, events)
            records = [(sid, *row) for row in _session_events(i, events, now)]
            await pool.copy_records_to_table("interactions", records=records, columns=_COLUMNS)
    finally:
        await pool.close()


async def _baseline(settings: TracemillSettings, config: DatasetBuildConfig) -> dict[str, float]:
    """The tasks' work in one process: read each session's events, build its examples."""
    pool = await connect_pool(settings.database)
    try:
        started, examples = time.monotonic(), 0
        for row in await select_sessions(pool, DEFAULT_ORG_ID, config.selection):
            events = [as_event(r) for r in await event_rows(pool, row["session_id"])]
            examples += len(build_examples({"session_id": str(row["session_id"]), "task": row["task"]},
                                           events, None, config.format))
        seconds = time.monotonic() - started
    finally:
        await pool.close()
    return {"examples": examples, "seconds": round(seconds, 3), "examples_per_s": round(examples / seconds, 1)}


def _ray_build(settings: TracemillSettings, config: DatasetBuildConfig, cpus: int) -> dict[str, float]:
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, logging_level=logging.WARNING,
             log_to_driver=False)
    try:
        started = time.monotonic()
        result = asyncio.run(run_build(settings, config, uuid.uuid4(), DEFAULT_ORG_ID, "bench"))
        seconds = time.monotonic() - started
    finally:
        ray.shutdown()
    examples = result.report["examples"]["train"] + result.report["examples"]["validation"]
    return {"examples": examples, "seconds": round(seconds, 3), "examples_per_s": round(examples / seconds, 1)}


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


def bench_dataset(sessions: int, events: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tracemill-bench-dataset-") as tmp:
        folder = Path(tmp)
        pg = EmbeddedPostgres(folder / "pgdata")
        try:
            dsn = pg.start()
            asyncio.run(apply_migrations(dsn))
            settings = TracemillSettings.build({"database": {"url": dsn}, "object_store": {
                "kind": "local", "local_dir": str(folder / "objects")}})
            task = f"bench {uuid.uuid4().hex[:8]}"
            _progress(f"seeding {sessions} sessions x {events} events")
            asyncio.run(_seed(settings, sessions, events, task))
            config = DatasetBuildConfig.build({"name": "bench", "selection": {"task_contains": task},
                                               "sessions_per_task": max(1, sessions // 20), "task_num_cpus": 1})
            _progress("baseline: one process, no Ray")
            baseline = asyncio.run(_baseline(settings, config))
            runs: dict[str, Any] = {}
            for cpus in (1, 2):
                _progress(f"Ray tasks on {cpus} CPU(s)")
                runs[f"ray_{cpus}_cpu"] = _ray_build(settings, config, cpus)
            _progress("ray job submit on 2 CPUs")
            job = _job_submit_build(settings, config, folder)
        finally:
            pg.stop()
    examples = runs["ray_2_cpu"]["examples"]
    job["examples_per_s"] = round(examples / job["seconds_submit_to_succeeded"], 1)
    ratio = {name: round(r["examples_per_s"] / baseline["examples_per_s"], 2) for name, r in runs.items()}
    ratio["ray_job_submit"] = round(job["examples_per_s"] / baseline["examples_per_s"], 2)
    return {"sessions": sessions, "events_per_session": events, "baseline_one_process": baseline, **runs,
            "ray_job_submit": job, "ratio_to_baseline": ratio,
            "note": "the ray runs include selection, dedupe, validation, the report and plot and "
                    "writing the files; the baseline only builds examples; job submit includes "
                    "the driver's start (interpreter, imports, ray.init)"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--events", type=int, default=120, help="events per seeded session")
    parser.add_argument("--output", type=Path)


def run(args: argparse.Namespace) -> int:
    """`tracemill bench dataset`: one line per way of building, with its ratio to the baseline."""
    from cluster.results import write_result

    result = bench_dataset(args.sessions, args.events)
    ratio = result["ratio_to_baseline"]
    rows = [("one process, no Ray", result["baseline_one_process"]["examples_per_s"], 1.0),
            *((f"Ray tasks, {c} CPU", result[f"ray_{c}_cpu"]["examples_per_s"], ratio[f"ray_{c}_cpu"]) for c in (1, 2)),
            ("ray job submit, 2 CPU", result["ray_job_submit"]["examples_per_s"], ratio["ray_job_submit"])]
    for name, rate, times in rows:
        print(f"{name:<24} {rate:>9.1f} examples/s  {times:.2f}x")
    write_result(args.output, {"benchmark": "dataset", **result})
    return 0
