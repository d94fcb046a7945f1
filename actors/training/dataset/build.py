"""A dataset build: select sessions, split them, turn chunks of them into examples in Ray
tasks, dedupe, validate against OpenAI's rules, write the files and the report to the object
store, and record the lineage in `datasets`. Progress goes to the log (the Ray job's log).

The build is all or nothing: files are written before the row says `succeeded`, and a failed
build records why (and the validator's problems in its report) and leaves no row claiming files.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import ray

from actors.errors import InvalidInput
from actors.ingest.rows import as_event
from actors.processing.task_resources import task_resources
from actors.storage.objectstore import ObjectStore, make_object_store
from actors.storage.postgres import connect_pool
from actors.storage.processing_repo import event_rows, screenshot_rows
from actors.storage import training_repo as repo
from configs.dataset import DatasetBuildConfig, DatasetFormatSettings
from configs.settings import TracemillSettings
from actors.training.dataset.formats import build_examples, dedupe, split_by_session, validate_examples
from actors.training.dataset.ranking import RankingRow, dedupe_rows, ranking_rows, ranking_stats
from actors.training.dataset.parquet import MEDIA_TYPE as PARQUET_MEDIA_TYPE, parquet_bytes
from actors.training.dataset.report import build_report, file_listing, quality_plot_png

__all__ = ["BuildResult", "build_chunk", "dataset_prefix", "run_build"]

log = logging.getLogger("tracemill.jobs.dataset")
_MAX_REPORTED_PROBLEMS = 50


@dataclass(frozen=True)
class BuildResult:
    dataset_id: uuid.UUID
    status: str
    report: dict[str, Any]
    files: dict[str, Any]


def dataset_prefix(org_id: uuid.UUID, dataset_id: uuid.UUID) -> str:
    return f"datasets/{org_id}/{dataset_id}/"


# ----------------------------------------------------------------------------- the Ray task

@ray.remote(max_retries=3)
def build_chunk(settings: TracemillSettings, fmt: DatasetFormatSettings,
                sessions: list[tuple[str, str | None, str]]) -> dict[str, Any]:
    """Examples of (session_id, task, split) sessions, by split. Read-only: safe to retry."""
    return asyncio.run(_build_chunk(settings, fmt, sessions))


async def _build_chunk(settings: TracemillSettings, fmt: DatasetFormatSettings,
                       sessions: list[tuple[str, str | None, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {"train": [], "validation": [], "empty_sessions": 0,
                           "ranking": {"train": [], "validation": []}}
    async with task_resources(settings) as res:
        for session_id, task, split in sessions:
            sid = uuid.UUID(session_id)
            events = [as_event(r) for r in await event_rows(res.pool, sid)]
            images = await _images(res.pool, res.store, sid, fmt)
            session = {"session_id": session_id, "task": task}
            examples = build_examples(session, events, images, fmt)
            out[split].extend(examples)
            out["empty_sessions"] += not examples
            if fmt.ranking:
                out["ranking"][split].extend(ranking_rows(session, events, await _frames(res.pool, sid), fmt))
    return out


async def _frames(pool: Any, session_id: uuid.UUID) -> dict[int, str]:
    """Object-store keys of the session's stored WebP frames by seq (what ranking rows name)."""
    return {row["seq"]: row["webp_key"] for row in await screenshot_rows(pool, session_id)
            if row["status"] == "compressed" and row["seq"] is not None and row["webp_key"]}


async def _images(pool: Any, store: ObjectStore, session_id: uuid.UUID,
                  fmt: DatasetFormatSettings) -> dict[int, str]:
    """The session's stored WebP frames by the seq they belong to, as the format asks."""
    if fmt.image_mode == "none" or fmt.max_images_per_example == 0:
        return {}
    images: dict[int, str] = {}
    for row in await screenshot_rows(pool, session_id):
        if row["status"] != "compressed" or row["seq"] is None or not row["webp_key"]:
            continue
        if fmt.image_mode == "object_url":
            images[row["seq"]] = await store.presigned_url(row["webp_key"], fmt.object_url_expiry_s)
        else:
            data = base64.b64encode(await store.get(row["webp_key"])).decode()
            images[row["seq"]] = f"data:image/webp;base64,{data}"
    return images


# ----------------------------------------------------------------------------- the driver

async def run_build(settings: TracemillSettings, config: DatasetBuildConfig,
                    dataset_id: uuid.UUID, org_id: uuid.UUID, code_version: str) -> BuildResult:
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
            return await _build(pool, store, settings, config, dataset_id, org_id)
        except BaseException as exc:
            report = getattr(exc, "report", None)
            await asyncio.shield(repo.fail_dataset(pool, dataset_id, str(exc) or repr(exc), report))
            raise
    finally:
        await store.close()
        await pool.close()


async def _build(pool: Any, store: ObjectStore, settings: TracemillSettings,
                 config: DatasetBuildConfig, dataset_id: uuid.UUID, org_id: uuid.UUID) -> BuildResult:
    started = time.monotonic()
    rows = await repo.select_sessions(pool, org_id, config.selection)
    if not rows:
        raise InvalidInput("no session matches the selection", code="empty_selection")
    qualities = {str(r["session_id"]): r["quality_overall"] for r in rows}
    train_ids, val_ids = split_by_session(list(qualities), config.split.validation_share,
                                          config.split.seed)
    log.info("dataset %s: %d sessions selected (%d train, %d validation)",
             dataset_id, len(rows), len(train_ids), len(val_ids))
    splits = {**{s: "train" for s in train_ids}, **{s: "validation" for s in val_ids}}
    work = [(str(r["session_id"]), r["task"], splits[str(r["session_id"])]) for r in rows]
    chunks = [work[i:i + config.sessions_per_task] for i in range(0, len(work), config.sessions_per_task)]
    results = await _run_chunks(settings, config, chunks, started)
    train = [ex for r in results for ex in r["train"]]
    validation = [ex for r in results for ex in r["validation"]]
    seen: set[str] = set()
    train, train_dups = dedupe(train, seen)
    validation, val_dups = dedupe(validation, seen)  # also drops copies of train examples
    ranking = _ranking(results)
    report = build_report(
        config, qualities=qualities, train_ids=train_ids, validation_ids=val_ids, train=train,
        validation=validation, dropped={"train": train_dups, "validation": val_dups},
        empty_sessions=sum(r["empty_sessions"] for r in results),
        seconds=time.monotonic() - started, tasks=len(chunks))
    _check_rules(train, validation, config, report)
    files = await _write_files(store, dataset_prefix(org_id, dataset_id), train, validation, report,
                               quality_plot_png(qualities, val_ids, config.selection.min_quality, config.name),
                               ranking)
    counts = {"sessions": len(rows), "train_examples": len(train),
              "validation_examples": len(validation)}
    if config.format.ranking:
        counts["ranking"] = {split: ranking_stats(rows_) for split, rows_ in ranking.items()}
    await repo.finish_dataset(pool, dataset_id, train_sessions=[uuid.UUID(s) for s in train_ids],
                              validation_sessions=[uuid.UUID(s) for s in val_ids], counts=counts,
                              report=report, files=files)
    log.info("dataset %s succeeded: %d train and %d validation examples in %.1fs (%.1f examples/s)",
             dataset_id, len(train), len(validation), report["build"]["seconds"],
             report["build"]["examples_per_s"] or 0)
    return BuildResult(dataset_id, "succeeded", report, files)


async def _run_chunks(settings: TracemillSettings, config: DatasetBuildConfig,
                      chunks: list[list[tuple[str, str | None, str]]], started: float) -> list[dict]:
    task = build_chunk.options(num_cpus=config.task_num_cpus)
    refs = [task.remote(settings, config.format, chunk) for chunk in chunks]
    index = {ref: i for i, ref in enumerate(refs)}
    results: list[dict | None] = [None] * len(refs)
    pending, sessions, examples = list(refs), 0, 0
    while pending:
        done, pending = await asyncio.to_thread(ray.wait, pending, num_returns=1)
        i = index[done[0]]
        results[i] = result = await asyncio.to_thread(ray.get, done[0])
        sessions += len(chunks[i])
        examples += len(result["train"]) + len(result["validation"])
        log.info("progress: %d/%d tasks, %d sessions, %d examples, %.1f examples/s",
                 len(refs) - len(pending), len(refs), sessions, examples,
                 examples / max(time.monotonic() - started, 1e-9))
    return [r for r in results if r is not None]


def _check_rules(train: list[dict], validation: list[dict], config: DatasetBuildConfig,
                 report: dict[str, Any]) -> None:
    problems = [{"split": "train", **p} for p in validate_examples(train, config.format)]
    problems += [{"split": "validation", **p}
                 for p in validate_examples(validation, config.format, min_examples=0)]
    if not problems:
        return
    report["problems"] = problems[:_MAX_REPORTED_PROBLEMS]
    first = problems[0]
    where = f"{first['split']} example {first['index']}" if first["index"] is not None else first["split"]
    exc = InvalidInput(f"the dataset breaks OpenAI's fine-tuning rules ({len(problems)} problem(s)); "
                       f"first: {where}: {first['message']}", details=problems[:_MAX_REPORTED_PROBLEMS],
                       code="dataset_invalid")
    exc.report = report  # type: ignore[attr-defined]  # kept with the failed row
    raise exc


def _ranking(results: list[dict]) -> dict[str, list[RankingRow]]:
    """Ranking rows by split, deduped like the chat examples (validation copies of train
    steps dropped); empty when the format does not ask for them."""
    seen: set[str] = set()
    train, _ = dedupe_rows((row for r in results for row in r["ranking"]["train"]), seen)
    validation, _ = dedupe_rows((row for r in results for row in r["ranking"]["validation"]), seen)
    return {"train": train, "validation": validation}


async def _write_files(store: ObjectStore, prefix: str, train: list[dict], validation: list[dict],
                       report: dict[str, Any], plot: bytes,
                       ranking: dict[str, list[RankingRow]]) -> dict[str, Any]:
    contents = {"train.jsonl": (_jsonl(train), "application/jsonl", len(train)),
                "validation.jsonl": (_jsonl(validation), "application/jsonl", len(validation)),
                "quality.png": (plot, "image/png", None)}
    if any(ranking.values()):
        for split, rows in ranking.items():
            contents[f"{split}.ranking.jsonl"] = (_jsonl([r.model_dump(mode="json") for r in rows]),
                                                  "application/jsonl", len(rows))
            # The open export: the same rows for pyarrow, pandas, DuckDB and HF `datasets`.
            contents[f"{split}.parquet"] = (parquet_bytes(rows), PARQUET_MEDIA_TYPE, len(rows))
    report["files"] = file_listing(contents)
    contents["report.json"] = (json.dumps(report, indent=2, sort_keys=True).encode(), "application/json", None)
    files = {}
    for name, (data, content_type, _) in contents.items():
        await store.put(prefix + name, data, content_type)
        files[name] = {"key": prefix + name, "bytes": len(data), "content_type": content_type,
                       "sha256": hashlib.sha256(data).hexdigest()}
    return files


def _jsonl(examples: list[dict]) -> bytes:
    return "".join(json.dumps(ex, ensure_ascii=False, separators=(",", ":")) + "\n"
                   for ex in examples).encode()
