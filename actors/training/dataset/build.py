"""A dataset build: select sessions, split them, turn chunks of them into encoded examples in
Ray tasks sized by measured cost (planner.py, chunks.py), append them to the split files as
they arrive with repeats dropped (writer.py), check OpenAI's rules, upload the files and the
report to the object store, and record the lineage in `datasets`. Progress goes to the log (the
Ray job's log). `one_process=True` runs the same chunks inline, no Ray: the same files, byte
for byte, and the baseline `tracemill bench dataset` measures the Ray build against.

The build is all or nothing: files are uploaded only once the rules pass and before the row
says `succeeded`; a failed build records why (and the validator's problems in its report) and
leaves no row claiming files.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import logging
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from actors.errors import InvalidInput
from actors.storage.cards_repo import cards_summary
from actors.storage.objectstore import ObjectStore, make_object_store
from actors.storage.postgres import connect_pool
from actors.storage import training_repo as repo
from actors.moderation.gate import moderate_sessions
from actors.storage.moderation_repo import blocked_summary
from actors.storage.review_repo import flags_of_sessions
from configs.dataset import DatasetBuildConfig
from configs.settings import TracemillSettings
from actors.training.dataset.chunks import ChunkResult, WorkItem, build_chunk, encode_chunk
from actors.training.dataset.formats import split_by_session
from actors.training.dataset.planner import ChunkPlanner, session_units
from actors.training.dataset.report import build_report, file_listing, quality_plot_png
from actors.training.dataset.writer import DatasetWriter, WrittenFile

__all__ = ["BuildResult", "dataset_prefix", "run_build"]

log = logging.getLogger("tracemill.jobs.dataset")
_PROGRESS_EVERY_S = 2.0


@dataclass(frozen=True)
class BuildResult:
    dataset_id: uuid.UUID
    status: str
    report: dict[str, Any]
    files: dict[str, Any]


def dataset_prefix(org_id: uuid.UUID, dataset_id: uuid.UUID) -> str:
    return f"datasets/{org_id}/{dataset_id}/"


# ----------------------------------------------------------------------------- the driver

async def run_build(settings: TracemillSettings, config: DatasetBuildConfig,
                    dataset_id: uuid.UUID, org_id: uuid.UUID, code_version: str,
                    *, one_process: bool = False) -> BuildResult:
    """Build (or, if it already succeeded, just report) dataset `dataset_id`."""
    pool = await connect_pool(settings.database)
    store = make_object_store(settings.object_store)
    try:
        await repo.insert_dataset(pool, dataset_id, org_id, config.name,
                                  config.model_dump(mode="json"), code_version)
        if await repo.claim_dataset(pool, dataset_id) == "succeeded":
            row = await repo.dataset_row(pool, dataset_id)
            log.info("dataset %s was already built; nothing to do", dataset_id)
            return BuildResult(dataset_id, "succeeded", json.loads(row["report"]), json.loads(row["files"]))
        try:
            return await _build(pool, store, settings, config, dataset_id, org_id, one_process)
        except BaseException as exc:
            report = getattr(exc, "report", None)
            await asyncio.shield(repo.fail_dataset(pool, dataset_id, str(exc) or repr(exc), report))
            raise
    finally:
        await store.close()
        await pool.close()


async def _work(pool: Any, settings: TracemillSettings, config: DatasetBuildConfig, org_id: uuid.UUID
                ) -> tuple[dict[str, float | None], list[str], list[str], list[WorkItem], list[float], dict[str, Any],
                           dict[str, Any]]:
    """(qualities, train ids, validation ids, the work list, each item's units, what review
    flags left out): every train session before every validation session, each in selection order."""
    rows = await repo.select_sessions(pool, org_id, config.selection)
    # Moderation (issue 19.3) first: its warn flags then count with the reviewers' below.
    moderated = (await moderate_sessions(pool, settings.moderation, [r["session_id"] for r in rows],
                                         batching=settings.batching)).as_dict()
    excluded: dict[str, Any] = {}
    if config.selection.exclude_flagged:
        rows, excluded = await _review_exclusions(pool, rows)
    if not rows:
        left_out = f" ({excluded['sessions']} left out by review flags)" if excluded.get("sessions") else ""
        raise InvalidInput("no session matches the selection" + left_out, code="empty_selection")
    qualities = {str(r["session_id"]): r["quality_overall"] for r in rows}
    train_ids, val_ids = split_by_session(list(qualities), config.split.validation_share,
                                          config.split.seed)
    tasks = {str(r["session_id"]): r["task"] for r in rows}
    work = [(s, tasks[s], "train") for s in train_ids] + [(s, tasks[s], "validation") for s in val_ids]
    sizes = await repo.session_sizes(pool, [uuid.UUID(s) for s, _, _ in work])
    embeds = config.format.image_mode == "data_url" and config.format.max_images_per_example > 0
    units = [session_units(*sizes.get(uuid.UUID(s), (0, 0)), embeds) for s, _, _ in work]
    return qualities, train_ids, val_ids, work, units, excluded, moderated


async def _review_exclusions(pool: Any, rows: list[Any]) -> tuple[list[Any], dict[str, Any]]:
    """The selected rows without the sessions a reviewer flagged whole, and the report's count of
    what flags leave out, by reason: those sessions, and the flagged steps of the sessions kept
    (their examples are skipped in the chunks)."""
    flags = await flags_of_sessions(pool, [r["session_id"] for r in rows])
    whole = {sid for sid, fl in flags.items() if any(seq is None for seq, _ in fl)}
    by_reason: dict[str, collections.Counter[str]] = {"sessions": collections.Counter(),
                                                      "steps": collections.Counter()}
    steps: set[tuple[Any, int]] = set()
    for sid, fl in flags.items():
        for seq, reason in fl:
            if sid in whole and seq is None:
                by_reason["sessions"][reason] += 1
            elif sid not in whole and seq is not None:
                steps.add((sid, seq))
                by_reason["steps"][reason] += 1
    return [r for r in rows if r["session_id"] not in whole], {
        "sessions": len(whole), "sessions_by_reason": dict(by_reason["sessions"]),
        "steps": len(steps), "steps_by_reason": dict(by_reason["steps"])}


async def _build(pool: Any, store: ObjectStore, settings: TracemillSettings, config: DatasetBuildConfig,
                 dataset_id: uuid.UUID, org_id: uuid.UUID, one_process: bool) -> BuildResult:
    started = time.monotonic()
    qualities, train_ids, val_ids, work, units, excluded, moderated = await _work(pool, settings, config, org_id)
    log.info("dataset %s: %d sessions selected (%d train, %d validation), %s",
             dataset_id, len(work), len(train_ids), len(val_ids),
             "in one process" if one_process else "on Ray")
    with tempfile.TemporaryDirectory(prefix="tracemill-dataset-") as folder:
        writer = DatasetWriter(Path(folder))
        timing = {"in_tasks": 0.0, "driver_waited": 0.0, "driver_wrote": 0.0}
        tasks = await _run_chunks(settings, config, work, units, writer, started, one_process, timing)
        written = writer.close()
        report = build_report(
            config, qualities=qualities, train_ids=train_ids, validation_ids=val_ids,
            train_stats=written["stats"]["train"], val_stats=written["stats"]["validation"],
            dropped=written["dropped"], empty_sessions=writer.empty_sessions,
            seconds=time.monotonic() - started, tasks=tasks,
            executor="one_process" if one_process else "ray")
        report["build"]["seconds_spent"] = {k: round(v, 3) for k, v in timing.items()}
        # Review flags (issue 16): left out when selection.exclude_flagged; reasons count flags.
        report["excluded_by_review"] = excluded if config.selection.exclude_flagged else {"exclude_flagged": False}
        # Moderation (issue 19.3): blocked steps made no example, whatever exclude_flagged says.
        report["blocked_by_moderation"] = {
            **await blocked_summary(pool, [uuid.UUID(s) for s, _, _ in work]), "this_build": moderated}
        # Session cards and sentiment (issue 19, actors/cards): counts and a sample of cards.
        report["cards"] = await cards_summary(pool, [uuid.UUID(s) for s, _, _ in work])
        _check_rules(written, report)
        files = await _upload(store, dataset_prefix(org_id, dataset_id), written, report,
                              quality_plot_png(qualities, val_ids, config.selection.min_quality, config.name))
    counts: dict[str, Any] = {"sessions": len(work), "train_examples": report["examples"]["train"],
                              "validation_examples": report["examples"]["validation"]}
    if config.format.ranking:
        counts["ranking"] = written["ranking"]
    await repo.finish_dataset(pool, dataset_id, train_sessions=[uuid.UUID(s) for s in train_ids],
                              validation_sessions=[uuid.UUID(s) for s in val_ids], counts=counts,
                              report=report, files=files)
    log.info("dataset %s succeeded: %d train and %d validation examples in %.1fs (%.1f examples/s)",
             dataset_id, report["examples"]["train"], report["examples"]["validation"],
             report["build"]["seconds"], report["build"]["examples_per_s"] or 0)
    return BuildResult(dataset_id, "succeeded", report, files)


def _submitter(settings: TracemillSettings, config: DatasetBuildConfig, one_process: bool
               ) -> tuple[Callable[[list[WorkItem]], Awaitable[ChunkResult]], int]:
    """How a chunk runs, and how many run at once: inline, or as a Ray task."""
    if one_process:
        return (lambda items: encode_chunk(settings, config.format, items, config.selection.exclude_flagged)), 1
    task = build_chunk.options(num_cpus=config.task_num_cpus)
    workers = max(int(ray.cluster_resources().get("CPU", 1) / config.task_num_cpus), 1)

    def submit(items: list[WorkItem]) -> Awaitable[ChunkResult]:
        ref = task.remote(settings, config.format, items, config.selection.exclude_flagged)  # submitted now, awaited in order
        return asyncio.to_thread(ray.get, ref)
    return submit, workers


async def _run_chunks(settings: TracemillSettings, config: DatasetBuildConfig, work: list[WorkItem],
                      units: list[float], writer: DatasetWriter, started: float, one_process: bool,
                      timing: dict[str, float]) -> int:
    """Every chunk through `writer`, in work order, with at most two chunks per worker in
    flight (their results wait in Ray's object store, not here); the number of tasks. `timing`
    collects where the seconds went: in the tasks (by phase), the driver waiting and writing."""
    submit, workers = _submitter(settings, config, one_process)
    planner = ChunkPlanner(units, workers=workers, target_seconds=config.task_target_seconds,
                           max_result_bytes=config.task_max_result_mb << 20,
                           max_sessions=config.sessions_per_task)
    in_flight: collections.deque[tuple[range, Awaitable[ChunkResult]]] = collections.deque()
    tasks, last_log = 0, 0.0
    while True:
        while len(in_flight) < (1 if one_process else 2 * workers) and (chunk := planner.next()):
            in_flight.append((chunk, submit([work[i] for i in chunk])))
        if not in_flight:
            return tasks
        chunk, pending = in_flight.popleft()
        waited = time.monotonic()
        result = await pending
        writing = time.monotonic()
        planner.observe(planner.units(chunk), result.seconds, result.nbytes)
        writer.add(result)
        timing["driver_waited"] += writing - waited
        timing["driver_wrote"] += time.monotonic() - writing
        timing["in_tasks"] += result.seconds
        for phase, seconds in result.phases.items():
            timing[f"in_tasks_{phase}"] = timing.get(f"in_tasks_{phase}", 0.0) + seconds
        tasks += 1
        if (now := time.monotonic()) - last_log >= _PROGRESS_EVERY_S or writer.sessions == len(work):
            last_log = now
            log.info("progress: %d/%d sessions, %d tasks, %d examples, %.1f examples/s",
                     writer.sessions, len(work), tasks, writer.examples,
                     writer.examples / max(now - started, 1e-9))


def _check_rules(written: dict[str, Any], report: dict[str, Any]) -> None:
    problems = written["problems"]
    if not problems:
        return
    report["problems"] = problems
    first = problems[0]
    where = f"{first['split']} example {first['index']}" if first["index"] is not None else first["split"]
    exc = InvalidInput(f"the dataset breaks OpenAI's fine-tuning rules ({written['problem_count']} problem(s)); "
                       f"first: {where}: {first['message']}", details=problems, code="dataset_invalid")
    exc.report = report  # type: ignore[attr-defined]  # kept with the failed row
    raise exc


async def _upload(store: ObjectStore, prefix: str, written: dict[str, Any], report: dict[str, Any],
                  plot: bytes) -> dict[str, Any]:
    """The split files (streamed from disk), the plot and the report; what `datasets.files` holds."""
    names = ["train.jsonl", "validation.jsonl", "quality.png"] + (
        ["train.ranking.jsonl", "train.parquet", "validation.ranking.jsonl", "validation.parquet"]
        if written["has_ranking"] else [])
    on_disk: dict[str, WrittenFile] = written["files"]
    report["files"] = file_listing({name: (len(plot), "image/png", None) if name == "quality.png" else
                                    (on_disk[name].bytes, on_disk[name].content_type, on_disk[name].rows)
                                    for name in names})
    in_memory = {"quality.png": (plot, "image/png"),
                 "report.json": (json.dumps(report, indent=2, sort_keys=True).encode(), "application/json")}
    files: dict[str, Any] = {}
    for name in [*names, "report.json"]:
        if name in in_memory:
            data, content_type = in_memory[name]
            await store.put(prefix + name, data, content_type)
            size, digest = len(data), hashlib.sha256(data).hexdigest()
        else:
            f = on_disk[name]
            await store.put_file(prefix + name, f.path, f.content_type)
            size, digest, content_type = f.bytes, f.sha256, f.content_type
        files[name] = {"key": prefix + name, "bytes": size, "content_type": content_type, "sha256": digest}
    return files
