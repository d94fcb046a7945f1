"""SQL for retention (issue 18.4, migration 0021): each workspace's periods, and the steps of the
retention job (actors/retention/job.py).

Every step picks what is past its period and not yet marked, removes it, and marks it in the
same transaction; objects go before the rows that name them. So a step repeated (a run killed
midway, two runs at once) finds less or nothing to do, never a key it can no longer name.
"""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime
from typing import Any

import asyncpg

from configs.retention import DATA_TYPES, DataType, RetentionPeriods

__all__ = [
    "Conn",
    "count_audit",
    "datasets_due",
    "delete_audit",
    "drop_partition",
    "ensure_partitions",
    "events_partitions",
    "expire_archives",
    "expire_datasets",
    "expire_events",
    "expire_screenshots",
    "get_periods",
    "partition_past",
    "screenshot_keys",
    "sessions_due",
    "set_periods",
    "workspaces",
]

Conn = asyncpg.Connection | asyncpg.Pool
_COLUMN = {t: f"{t}_days" for t in DATA_TYPES}
# What a session keeps searchable once its events are gone: its task, as at creation (0008).
_TASK_ONLY_DOC = "setweight(to_tsvector('simple', coalesce(task, '')), 'A')"
# The column that says a type of a session's data was removed.
_MARK = {"events": "events_expired_at", "screenshots": "screenshots_expired_at", "archives": "archive_expired_at"}


async def get_periods(conn: Conn, workspace_id: uuid.UUID) -> asyncpg.Record | None:
    """The workspace's own periods (None where it follows the default) and when they changed."""
    return await conn.fetchrow(
        "SELECT events_days, screenshots_days, archives_days, datasets_days, audit_days, updated_at"
        " FROM workspace_retention WHERE workspace_id = $1", workspace_id)


async def set_periods(conn: Conn, org_id: uuid.UUID, workspace_id: uuid.UUID,
                      changes: dict[DataType, int | None]) -> asyncpg.Record:
    """Set the given types' periods (None: back to the default); the others keep theirs."""
    columns = [_COLUMN[t] for t in changes]
    values = list(changes.values())
    assigns = ", ".join(f"{c} = ${i + 3}" for i, c in enumerate(columns))
    names = "".join(f", {c}" for c in columns)
    params = "".join(f", ${i + 3}" for i in range(len(columns)))
    return await conn.fetchrow(
        f"INSERT INTO workspace_retention (workspace_id, org_id{names}) VALUES ($1, $2{params})"
        f" ON CONFLICT (workspace_id) DO UPDATE SET updated_at = now(){', ' + assigns if assigns else ''}"
        " RETURNING events_days, screenshots_days, archives_days, datasets_days, audit_days, updated_at",
        workspace_id, org_id, *values)


async def workspaces(conn: Conn, defaults: RetentionPeriods) -> list[dict[str, Any]]:
    """Every workspace with its effective periods (its own, else the default)."""
    rows = await conn.fetch(
        "SELECT w.workspace_id, w.org_id, r.events_days, r.screenshots_days, r.archives_days,"
        " r.datasets_days, r.audit_days FROM workspaces w"
        " LEFT JOIN workspace_retention r USING (workspace_id) ORDER BY w.org_id, w.workspace_id")
    return [{"workspace_id": r["workspace_id"], "org_id": r["org_id"],
             **{t: r[_COLUMN[t]] or defaults.days(t) for t in DATA_TYPES}} for r in rows]


async def sessions_due(conn: Conn, data_type: DataType, workspace_id: uuid.UUID, days: int,
                       limit: int) -> list[asyncpg.Record]:
    """Sessions of the workspace created more than `days` ago whose `data_type` is still kept."""
    extra = " AND archive_key IS NOT NULL" if data_type == "archives" else ""
    return await conn.fetch(
        f"SELECT session_id, org_id, archive_key, screenshot_count FROM sessions WHERE workspace_id = $1"
        f" AND created_at < now() - make_interval(days => $2) AND {_MARK[data_type]} IS NULL{extra}"
        " ORDER BY created_at LIMIT $3", workspace_id, days, limit)


async def expire_events(conn: asyncpg.Connection, session_ids: list[uuid.UUID]) -> int:
    """Remove the sessions' events; the session rows keep counters, quality and analysis, and
    their search document shrinks to the task (it held the events' URLs, titles and texts)."""
    async with conn.transaction():
        gone = await conn.execute("DELETE FROM interactions WHERE session_id = ANY($1::uuid[])", session_ids)
        await conn.execute(
            f"UPDATE sessions SET events_expired_at = now(), search_doc = {_TASK_ONLY_DOC}"
            " WHERE session_id = ANY($1::uuid[]) AND events_expired_at IS NULL", session_ids)
    return int(gone.split()[-1])


async def screenshot_keys(conn: Conn, session_ids: list[uuid.UUID]) -> list[str]:
    rows = await conn.fetch(
        "SELECT k FROM (SELECT unnest(ARRAY[raw_key, webp_key]) AS k FROM screenshots"
        " WHERE session_id = ANY($1::uuid[])) keys WHERE k IS NOT NULL", session_ids)
    return [r["k"] for r in rows]


async def expire_screenshots(conn: asyncpg.Connection, session_ids: list[uuid.UUID]) -> int:
    """Screenshot rows of the sessions, once their objects are gone; the session keeps its count."""
    async with conn.transaction():
        gone = await conn.execute("DELETE FROM screenshots WHERE session_id = ANY($1::uuid[])", session_ids)
        await conn.execute("UPDATE sessions SET screenshots_expired_at = now()"
                           " WHERE session_id = ANY($1::uuid[]) AND screenshots_expired_at IS NULL", session_ids)
    return int(gone.split()[-1])


async def expire_archives(conn: Conn, session_ids: list[uuid.UUID]) -> None:
    await conn.execute(
        "UPDATE sessions SET archive_key = NULL, archive_sha256 = NULL, archive_bytes = NULL,"
        " archive_expired_at = coalesce(archive_expired_at, now()) WHERE session_id = ANY($1::uuid[])", session_ids)


async def datasets_due(conn: Conn, workspace_id: uuid.UUID, days: int, limit: int) -> list[dict[str, Any]]:
    """Datasets created more than `days` ago that are not withdrawn yet or still hold files."""
    rows = await conn.fetch(
        "SELECT dataset_id, files FROM datasets WHERE workspace_id = $1"
        " AND created_at < now() - make_interval(days => $2)"
        " AND (withdrawn_at IS NULL OR files <> '{}'::jsonb) ORDER BY created_at LIMIT $3",
        workspace_id, days, limit)
    return [{"dataset_id": r["dataset_id"], "keys": _file_keys(r["files"])} for r in rows]


def _file_keys(raw: Any) -> list[str]:
    files = json.loads(raw) if isinstance(raw, str) else (raw or {})
    return [v["key"] for v in files.values() if isinstance(v, dict) and v.get("key")]


async def expire_datasets(conn: asyncpg.Connection, dataset_ids: list[uuid.UUID]) -> int:
    """Withdraw the datasets (files gone, row marked) and flag the models trained on them, as the
    purge does for a deleted session (actors/storage/deletion_repo.py); returns models flagged."""
    async with conn.transaction():
        await conn.execute(
            "UPDATE datasets SET withdrawn_at = coalesce(withdrawn_at, now()),"
            " withdrawn_reason = coalesce(withdrawn_reason, 'past its retention period'),"
            " files = '{}'::jsonb, updated_at = now() WHERE dataset_id = ANY($1::uuid[])", dataset_ids)
        models = await conn.execute(
            "UPDATE models SET flagged_at = coalesce(flagged_at, now()),"
            " flag_reason = coalesce(flag_reason, 'trained on a dataset withdrawn after its retention period')"
            " WHERE dataset_id = ANY($1::uuid[]) AND flagged_at IS NULL", dataset_ids)
    return int(models.split()[-1])


async def delete_audit(conn: asyncpg.Connection, workspace_id: uuid.UUID | None, days: int, limit: int) -> int:
    """Delete up to `limit` audit entries of the workspace (None: entries naming no workspace)
    older than `days`: the one delete the append-only trigger allows (migration 0021)."""
    async with conn.transaction():
        before: datetime = await conn.fetchval("SELECT now() - make_interval(days => $1)", days)
        await conn.execute("SELECT set_config('tracemill.audit_expire_before', $1, true)", before.isoformat())
        gone = await conn.execute(
            "DELETE FROM audit_log WHERE audit_id IN (SELECT audit_id FROM audit_log"
            " WHERE workspace_id IS NOT DISTINCT FROM $1 AND at < $2 LIMIT $3)", workspace_id, before, limit)
    return int(gone.split()[-1])


async def count_audit(conn: Conn, workspace_id: uuid.UUID | None, days: int) -> int:
    return int(await conn.fetchval(
        "SELECT count(*) FROM audit_log WHERE workspace_id IS NOT DISTINCT FROM $1"
        " AND at < now() - make_interval(days => $2)", workspace_id, days))


async def ensure_partitions(conn: Conn, ahead: int) -> list[str]:
    """This month's event partition and the next `ahead` months'; names of those created."""
    rows = await conn.fetch(
        "SELECT m, tracemill_events_partition(m) AS created FROM ("
        " SELECT tracemill_session_month(now() + make_interval(months => k)) AS m"
        " FROM generate_series(0, $1) k) months ORDER BY m", ahead)
    created = [f"interactions_p{r['m']:%Y%m}" for r in rows if r["created"]]
    # Months that reached the default partition (the job was not run for a while, or events of
    # a session created before the oldest partition) get theirs, which moves their rows out.
    for r in await conn.fetch("SELECT DISTINCT session_month AS m FROM interactions_default ORDER BY 1"):
        if await conn.fetchval("SELECT tracemill_events_partition($1)", r["m"]):
            created.append(f"interactions_p{r['m']:%Y%m}")
    return created


async def events_partitions(conn: Conn) -> list[tuple[str, date]]:
    """The monthly partitions of `interactions` (not the default one), oldest first."""
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'interactions'::regclass AND c.relname ~ '^interactions_p[0-9]{6}$'"
        " ORDER BY c.relname")
    return [(r["relname"], date(int(r["relname"][-6:-2]), int(r["relname"][-2:]), 1)) for r in rows]


async def partition_past(conn: Conn, name: str, default_days: int) -> bool:
    """Whether every session with events in the partition is past its workspace's events period."""
    return not await conn.fetchval(
        f"SELECT EXISTS (SELECT 1 FROM (SELECT DISTINCT session_id FROM {_ident(name)}) d"
        " JOIN sessions s USING (session_id) LEFT JOIN workspace_retention r ON r.workspace_id = s.workspace_id"
        " WHERE s.created_at >= now() - make_interval(days => coalesce(r.events_days, $1)))", default_days)


async def drop_partition(conn: asyncpg.Connection, name: str, lock_timeout_ms: int = 5000) -> int:
    """Mark the partition's sessions' events expired and drop it in one transaction; the number
    of sessions marked. A short lock timeout: the drop needs the parent table to itself for a
    moment, and waiting behind a long reader would stall the ingest queued behind the drop."""
    table = _ident(name)
    async with conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}")
        marked = await conn.execute(
            f"UPDATE sessions SET events_expired_at = now(), search_doc = {_TASK_ONLY_DOC}"
            f" WHERE session_id IN (SELECT DISTINCT session_id FROM {table}) AND events_expired_at IS NULL")
        await conn.execute(f"DROP TABLE {table}")
    return int(marked.split()[-1])


def _ident(name: str) -> str:
    if not (name.startswith("interactions_p") and name[14:].isdigit() and len(name) == 20):
        raise ValueError(f"not an events partition: {name!r}")
    return f'"{name}"'
