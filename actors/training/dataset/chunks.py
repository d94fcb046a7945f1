"""The work of a dataset build that scales out: one chunk of sessions turned into the encoded
lines of its files, in a Ray task (`build_chunk`) or inline for the one-process build
(`encode_chunk`). Everything that costs per example happens here, where it runs in parallel:
reading events and frames, building examples, the JSON lines, their dedupe keys, the rule check,
token estimates and the Arrow rows of the Parquet export. The driver (build.py, writer.py) only
drops repeats and appends bytes to files.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import ray

from actors.ingest.rows import as_event
from actors.processing.task_resources import task_resources
from actors.storage.objectstore import ObjectStore
from actors.storage.processing_repo import event_rows, screenshot_rows
from actors.storage.moderation_repo import blocked_steps
from actors.storage.review_repo import flagged_steps
from actors.training.dataset.formats import build_examples, example_problems, example_summary
from actors.training.dataset.parquet import rows_ipc
from actors.training.dataset.ranking import RankingRow, content_digest, ranking_rows
from configs.dataset import DatasetFormatSettings
from configs.settings import TracemillSettings

__all__ = ["ChunkResult", "EncodedLines", "EncodedSplit", "WorkItem", "build_chunk", "encode_chunk",
           "encode_examples", "encode_rows", "jsonl_line"]

WorkItem = tuple[str, "str | None", str]  # (session_id, task, split)


def jsonl_line(value: Any) -> bytes:
    """One JSONL line as every file of a build writes it: compact, UTF-8, newline-ended."""
    return (json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


@dataclass
class EncodedLines:
    """Lines of one file, concatenated, with where each ends and the key it is deduped by."""

    data: bytearray = field(default_factory=bytearray)
    ends: list[int] = field(default_factory=list)
    keys: list[bytes] = field(default_factory=list)

    def append(self, line: bytes, key: bytes) -> None:
        self.data += line
        self.ends.append(len(self.data))
        self.keys.append(key)


@dataclass
class EncodedSplit:
    """One split's part of a chunk: chat examples with (tokens, images, action) and rule
    problems by position; ranking rows with (has positive, candidates) and their Arrow rows."""

    examples: EncodedLines = field(default_factory=EncodedLines)
    summaries: list[tuple[int, int, str]] = field(default_factory=list)
    problems: dict[int, list[tuple[str, str]]] = field(default_factory=dict)
    ranking: EncodedLines = field(default_factory=EncodedLines)
    ranking_summaries: list[tuple[bool, int]] = field(default_factory=list)
    ranking_ipc: bytes | None = None


@dataclass
class ChunkResult:
    splits: dict[str, EncodedSplit]
    sessions: int
    empty_sessions: int
    seconds: float  # the chunk's work inside its worker, what the planner sizes chunks by
    # Where the seconds went (wall time by phase, and the worker's CPU time), for the build's
    # report: a task much slower than the same chunk in one process shows here why.
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return sum(len(s.examples.data) + len(s.ranking.data) + len(s.ranking_ipc or b"")
                   for s in self.splits.values())


@ray.remote(max_retries=3)
def build_chunk(settings: TracemillSettings, fmt: DatasetFormatSettings,
                sessions: list[WorkItem], skip_flagged_steps: bool = False) -> ChunkResult:
    """A chunk's encoded lines. Read-only: safe to retry."""
    return asyncio.run(encode_chunk(settings, fmt, sessions, skip_flagged_steps))


async def encode_chunk(settings: TracemillSettings, fmt: DatasetFormatSettings,
                       sessions: list[WorkItem], skip_flagged_steps: bool = False) -> ChunkResult:
    started, cpu = time.monotonic(), time.process_time()
    phases = dict.fromkeys(("connect", "read", "examples", "encode", "ranking"), 0.0)
    clock = [started]

    def lap(phase: str) -> None:
        now = time.monotonic()
        phases[phase] += now - clock[0]
        clock[0] = now

    splits: dict[str, EncodedSplit] = {}
    rows: dict[str, list[RankingRow]] = {}
    empty = 0
    async with task_resources(settings) as res:
        lap("connect")
        for session_id, task, split in sessions:
            sid = uuid.UUID(session_id)
            events = [as_event(r) for r in await event_rows(res.pool, sid)]
            shots = await screenshot_rows(res.pool, sid)
            session: dict[str, Any] = {"session_id": session_id, "task": task}
            # Steps moderation blocked never make an example; those a reviewer (or moderation's
            # warn) flagged neither, with exclude_flagged (formats.action_steps).
            skip = await blocked_steps(res.pool, sid)
            if skip_flagged_steps:
                skip |= await flagged_steps(res.pool, sid)
            if skip:
                session["skip_seqs"] = skip
            images = await _images(res.store, shots, fmt)
            lap("read")
            examples = build_examples(session, events, images, fmt)
            lap("examples")
            empty += not examples
            encode_examples(splits.setdefault(split, EncodedSplit()), examples, fmt)
            lap("encode")
            if fmt.ranking:
                rows.setdefault(split, []).extend(ranking_rows(session, events, _frames(shots), fmt))
            lap("ranking")
    for split, split_rows in rows.items():
        encode_rows(splits.setdefault(split, EncodedSplit()), split_rows)
    lap("ranking")
    phases["cpu"] = time.process_time() - cpu
    return ChunkResult(splits, len(sessions), empty, time.monotonic() - started, phases)


def encode_examples(out: EncodedSplit, examples: list[dict], fmt: DatasetFormatSettings) -> None:
    for ex in examples:
        line = jsonl_line(ex)
        # The line's hash is the example's identity: one builder makes every example, so equal
        # examples have equal key order and equal lines (no second, sorted encoding needed).
        out.examples.append(line, hashlib.sha256(line).digest())
        out.summaries.append(example_summary(ex))
        if problems := example_problems(ex, fmt):
            out.problems[len(out.summaries) - 1] = problems


def encode_rows(out: EncodedSplit, rows: list[RankingRow]) -> None:
    for row in rows:
        out.ranking.append(jsonl_line(row.model_dump(mode="json")), content_digest(row))
        out.ranking_summaries.append((row.positive_index is not None, len(row.candidates)))
    out.ranking_ipc = rows_ipc(rows)


def _frames(shots: list[Any]) -> dict[int, str]:
    """Object-store keys of the session's stored WebP frames by seq (what ranking rows name)."""
    return {row["seq"]: row["webp_key"] for row in shots
            if row["status"] == "compressed" and row["seq"] is not None and row["webp_key"]}


async def _images(store: ObjectStore, shots: list[Any], fmt: DatasetFormatSettings) -> dict[int, str]:
    """The session's stored WebP frames by the seq they belong to, as the format asks."""
    if fmt.image_mode == "none" or fmt.max_images_per_example == 0:
        return {}
    images: dict[int, str] = {}
    for seq, key in _frames(shots).items():
        if fmt.image_mode == "object_url":
            images[seq] = await store.presigned_url(key, fmt.object_url_expiry_s)
        else:
            images[seq] = f"data:image/webp;base64,{base64.b64encode(await store.get(key)).decode()}"
    return images
