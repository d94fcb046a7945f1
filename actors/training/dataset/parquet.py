"""The open export of a dataset build: `train.parquet` / `validation.parquet`, one row per
action step, written from the same `RankingRow`s as `*.ranking.jsonl` (ranking.py).

The layout follows Multimodal-Mind2Web on the Hugging Face Hub (osunlp/Multimodal-Mind2Web):
one row per action with its task, the page it happened on, the operation and its value, the
candidate elements with the acted-on one marked, and the screenshot. Where our data differs the
columns say so plainly rather than borrow a name that would mislead:

    Mind2Web                     here
    annotation_id                session_id      (one recorded session = one task)
    action_uid                   action_uid      ("<session_id>:<step_index>")
    target_action_index          step_index      (0-based, per session)
    confirmed_task               task
    -                            url, title      (the page before the step)
    action_reprs (up to here)    previous_actions (the last k, oldest first)
    operation.op / .value        action_type / value
    pos_candidates               target          (the positive candidate; null for navigate)
                                 target_index    (its position in `candidates`)
    pos + neg_candidates         candidates      (list<struct{id, text, selector, positive}>)
    screenshot (image)           screenshot      (object-store key of the WebP frame, or null)

Screenshots stay references, not bytes: a Parquet file a laptop can open, and frames that
were redacted once and are not copied again. Every column carries its description in the
Arrow field metadata, so `pq.read_schema(path).field("value").metadata` documents the file.
Readable with pyarrow, pandas, DuckDB and `datasets.load_dataset("parquet", data_files=...)`.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from actors.training.dataset.ranking import RankingCandidate, RankingRow

__all__ = ["FORMAT_VERSION", "MEDIA_TYPE", "ROW_GROUP_ROWS", "SCHEMA", "ParquetFileWriter",
           "parquet_bytes", "read_parquet", "rows_ipc"]

FORMAT_VERSION = "tracemill-ranking/1"
MEDIA_TYPE = "application/vnd.apache.parquet"  # registered with IANA in 2024
ROW_GROUP_ROWS = 10_000  # rows per row group of a build's file (readers skip groups by statistics)
_ELEMENT = [("id", pa.string()), ("text", pa.string()), ("selector", pa.string())]


def _field(name: str, type_: pa.DataType, description: str, nullable: bool = False) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"description": description})


SCHEMA = pa.schema([
    _field("action_uid", pa.string(), "unique id of the step: <session_id>:<step_index>"),
    _field("session_id", pa.string(), "the recorded session (one task); split by session"),
    _field("step_index", pa.int32(), "0-based position of the action step in its session"),
    _field("task", pa.string(), "what the session set out to do (redacted)"),
    _field("url", pa.string(), "URL of the page before the step"),
    _field("title", pa.string(), "title of the page before the step"),
    _field("previous_actions", pa.list_(pa.field("item", pa.string(), nullable=False)),
           "the last k actions as compact JSON, oldest first"),
    _field("action_type", pa.string(), "click | type | select | submit | key | navigate"),
    _field("value", pa.string(), "typed or selected value, key name, or URL of a navigation",
           nullable=True),
    _field("target_index", pa.int32(), "position of the positive in candidates; null when "
           "the step has no target element (a navigation)", nullable=True),
    _field("target", pa.struct(_ELEMENT), "the acted-on element (the positive candidate)",
           nullable=True),
    _field("candidates", pa.list_(pa.field("item", pa.struct([*_ELEMENT, ("positive", pa.bool_())]),
                                           nullable=False)),
           "the page's candidate elements; id: stable hash within a session, text: tag, text "
           "and key attributes, selector: best selector kind=value, positive: acted on"),
    _field("screenshot", pa.string(), "object-store key of the latest WebP frame at or before "
           "the step (GET /v1/sessions/{id}/screenshots/...), or null", nullable=True),
], metadata={"format": FORMAT_VERSION,
             "layout": "one row per action step, after osunlp/Multimodal-Mind2Web"})


def _element(c: RankingCandidate) -> dict[str, Any]:
    return {"id": c.id, "text": c.text, "selector": c.selector}


def _record(row: RankingRow) -> dict[str, Any]:
    index = row.positive_index
    return {
        "action_uid": f"{row.session_id}:{row.step_index}", "session_id": row.session_id,
        "step_index": row.step_index, "task": row.task, "url": row.url, "title": row.title,
        "previous_actions": list(row.previous_actions), "action_type": row.action_type,
        "value": row.value, "target_index": index,
        "target": None if index is None else _element(row.candidates[index]),
        "candidates": [{**_element(c), "positive": c.positive} for c in row.candidates],
        "screenshot": row.screenshot,
    }


def parquet_bytes(rows: Sequence[RankingRow]) -> bytes:
    """The rows as one Parquet file (zstd); an empty split is a valid file with the schema."""
    table = pa.Table.from_pylist([_record(r) for r in rows], schema=SCHEMA)
    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd")
    return out.getvalue()


def rows_ipc(rows: Sequence[RankingRow]) -> bytes:
    """The rows as an Arrow IPC stream in SCHEMA: how a build task hands its rows to the
    driver's `ParquetFileWriter` without the driver building them again."""
    table = pa.Table.from_pylist([_record(r) for r in rows], schema=SCHEMA)
    out = io.BytesIO()
    with pa.ipc.new_stream(out, SCHEMA) as stream:
        stream.write_table(table)
    return out.getvalue()


class ParquetFileWriter:
    """One Parquet file written as rows arrive, in row groups of exactly `row_group_rows` (the
    last one shorter): the file's bytes depend on its rows only, not on how they were batched,
    so a build on Ray and a build in one process write the same file."""

    def __init__(self, path: Path, row_group_rows: int = ROW_GROUP_ROWS) -> None:
        self._writer = pq.ParquetWriter(path, SCHEMA, compression="zstd")
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._group = row_group_rows
        self.rows = 0

    def add(self, ipc: bytes, keep: Sequence[bool]) -> None:
        """The rows of a `rows_ipc` stream whose `keep` flag is set."""
        table = pa.ipc.open_stream(ipc).read_all().filter(pa.array(keep, pa.bool_()))
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self.rows += table.num_rows
        if self._pending_rows >= self._group:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        table = pa.concat_tables(self._pending) if self._pending else SCHEMA.empty_table()
        start = 0
        while table.num_rows - start >= self._group or (final and start < table.num_rows):
            self._writer.write_table(table.slice(start, self._group))
            start += min(self._group, table.num_rows - start)
        rest = table.slice(start)
        self._pending, self._pending_rows = ([rest] if rest.num_rows else []), rest.num_rows

    def close(self) -> None:
        """Write what is left; a file with no rows is still a valid file with the schema."""
        self._flush(final=True)
        if self.rows == 0:
            self._writer.write_table(SCHEMA.empty_table())
        self._writer.close()


def read_parquet(data: bytes) -> list[RankingRow]:
    """A file `parquet_bytes` wrote, back as RankingRows (what a trainer reading the open
    export instead of the JSONL gets)."""
    return [RankingRow(
        session_id=r["session_id"], step_index=r["step_index"], task=r["task"], url=r["url"],
        title=r["title"], previous_actions=r["previous_actions"], action_type=r["action_type"],
        value=r["value"], screenshot=r["screenshot"],
        candidates=[RankingCandidate(**c) for c in r["candidates"]],
    ) for r in pq.read_table(io.BytesIO(data)).to_pylist()]
