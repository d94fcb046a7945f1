"""SQL for exports (issue 18.2, migration 0020): the export's row, and what the export job reads
about a recorder. What belongs to a recorder's sessions is named once, in recorder_data."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from actors.storage.postgres import json_dumps
from actors.storage.recorder_data import SESSION_TABLES

__all__ = [
    "claim",
    "consent_history",
    "export_row",
    "fail",
    "insert",
    "live_recorder",
    "live_recorder_by_id",
    "publish",
    "recorder_keys",
    "recorder_sessions",
    "session_rows",
    "set_job",
    "set_progress",
    "visible_export",
    "iter_events",
]

Conn = asyncpg.Connection | asyncpg.Pool

# Columns left out of a session's exported row: a hash of the create request (an idempotency
# check, nothing recorded) and the search index (derived from the events, which are exported).
_SESSION_SKIP = "- 'request_hash' - 'search_doc'"


async def live_recorder(conn: Conn, org_id: uuid.UUID, workspace_id: uuid.UUID,
                        recorder_id: uuid.UUID) -> asyncpg.Record | None:
    """The workspace's recorder, unless deleted (None then, as for an unknown one)."""
    return await conn.fetchrow(
        "SELECT recorder_id, org_id, workspace_id, name, created_at FROM recorders"
        " WHERE recorder_id = $1 AND org_id = $2 AND workspace_id = $3 AND deleted_at IS NULL",
        recorder_id, org_id, workspace_id)


async def live_recorder_by_id(conn: Conn, recorder_id: uuid.UUID) -> asyncpg.Record | None:
    """A recorder of any workspace, unless deleted (an operator's CLI names it by id alone)."""
    return await conn.fetchrow("SELECT recorder_id, org_id, workspace_id, name, created_at FROM recorders"
                               " WHERE recorder_id = $1 AND deleted_at IS NULL", recorder_id)


async def insert(conn: Conn, export_id: uuid.UUID, org_id: uuid.UUID, workspace_id: uuid.UUID,
                 recorder_id: uuid.UUID, requested_by: str) -> None:
    await conn.execute(
        "INSERT INTO exports (export_id, org_id, workspace_id, recorder_id, requested_by)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (export_id) DO NOTHING",
        export_id, org_id, workspace_id, recorder_id, requested_by)


async def set_job(conn: Conn, export_id: uuid.UUID, ray_job_id: str) -> None:
    await conn.execute("UPDATE exports SET ray_job_id = $2, updated_at = now() WHERE export_id = $1",
                       export_id, ray_job_id)


async def export_row(conn: Conn, export_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM exports WHERE export_id = $1", export_id)


async def visible_export(conn: Conn, export_id: uuid.UUID) -> asyncpg.Record | None:
    """The export, unless its recorder is deleted (hidden from every read, as its sessions are)."""
    return await conn.fetchrow("SELECT e.* FROM exports e JOIN recorders r USING (recorder_id)"
                               " WHERE e.export_id = $1 AND r.deleted_at IS NULL", export_id)


async def claim(conn: Conn, export_id: uuid.UUID) -> str | None:
    """Mark the export running unless it is ready; returns the status it had (None: no such
    export). A rerun of a failed or interrupted export starts it over."""
    row = await conn.fetchrow(
        "WITH old AS (SELECT status FROM exports WHERE export_id = $1 FOR UPDATE)"
        " UPDATE exports e SET status = CASE WHEN old.status = 'ready' THEN old.status ELSE 'running' END,"
        " started_at = CASE WHEN old.status = 'ready' THEN e.started_at ELSE now() END,"
        " error = CASE WHEN old.status = 'ready' THEN e.error END, updated_at = now()"
        " FROM old WHERE e.export_id = $1 RETURNING old.status", export_id)
    return None if row is None else str(row["status"])


async def set_progress(conn: Conn, export_id: uuid.UUID, progress: dict[str, Any]) -> None:
    await conn.execute("UPDATE exports SET progress = $2::jsonb, updated_at = now()"
                       " WHERE export_id = $1 AND status = 'running'", export_id, json_dumps(progress))


async def publish(conn: Conn, export_id: uuid.UUID, *, object_key: str, size: int, sha256: str,
                  counts: dict[str, Any]) -> bool:
    """The ZIP under `object_key` becomes the export's; False when another run published first
    (the caller removes its own copy)."""
    done = await conn.execute(
        "UPDATE exports SET status = 'ready', object_key = $2, bytes = $3, sha256 = $4, counts = $5::jsonb,"
        " progress = $5::jsonb, error = NULL, finished_at = now(), updated_at = now()"
        " WHERE export_id = $1 AND status <> 'ready'", export_id, object_key, size, sha256, json_dumps(counts))
    return done.split()[-1] == "1"


async def fail(conn: Conn, export_id: uuid.UUID, error: str) -> None:
    """Mark a queued or running export failed; a ready one keeps its ZIP."""
    await conn.execute(
        "UPDATE exports SET status = 'failed', error = $2, finished_at = now(), updated_at = now()"
        " WHERE export_id = $1 AND status IN ('queued', 'running')", export_id, error[:2000])


async def recorder_sessions(conn: Conn, recorder_id: uuid.UUID) -> list[uuid.UUID]:
    """The recorder's sessions, oldest first; deleted ones are hidden from every read, this too."""
    rows = await conn.fetch("SELECT session_id FROM sessions WHERE recorder_id = $1 AND deleted_at IS NULL"
                            " ORDER BY created_at, session_id", recorder_id)
    return [r["session_id"] for r in rows]


async def recorder_keys(conn: Conn, recorder_id: uuid.UUID) -> list[dict[str, Any]]:
    """The keys bound to the recorder: ids, names and dates, never the key or its hash."""
    rows = await conn.fetch(
        "SELECT key_id, name, role, created_at, revoked_at FROM api_keys WHERE recorder_id = $1"
        " ORDER BY created_at", recorder_id)
    return [dict(r) for r in rows]


async def session_rows(conn: Conn, session_id: uuid.UUID) -> dict[str, Any]:
    """A session's own row and its rows in every table that belongs to it (recorder_data's
    SESSION_TABLES) except the events, which the export pages through: {table: rows as JSON}."""
    session = await conn.fetchval(f"SELECT (to_jsonb(s) {_SESSION_SKIP})::text FROM sessions s"
                                  " WHERE session_id = $1", session_id)
    out: dict[str, Any] = {"sessions": json.loads(session) if session else None}
    for table in SESSION_TABLES:
        if table == "interactions":
            continue
        text = await conn.fetchval(f"SELECT coalesce(jsonb_agg(to_jsonb(t)), '[]')::text FROM {table} t"
                                   " WHERE session_id = $1", session_id)
        out[table] = json.loads(text)
    return out


async def consent_history(conn: Conn, recorder_id: uuid.UUID) -> list[dict[str, Any]] | None:
    """The recorder's consent records (migration 0019), oldest first; None where that table
    does not exist (a database migrated before it)."""
    if await conn.fetchval("SELECT to_regclass('public.consent_records')") is None:
        return None
    rows = await conn.fetch("SELECT consent_id, notice_version, agreed_at, withdrawn_at FROM consent_records"
                            " WHERE recorder_id = $1 ORDER BY agreed_at", recorder_id)
    return [dict(r) for r in rows]


async def iter_events(conn: Conn, session_id: uuid.UUID, page: int) -> AsyncIterator[list[asyncpg.Record]]:
    """The session's stored (redacted) events in pages of `page`, in seq order."""
    from actors.storage.processing_repo import event_rows

    after = -1
    while True:
        rows = await event_rows(conn, session_id, after, page)
        if not rows:
            return
        yield rows
        after = rows[-1]["seq"]
        if len(rows) < page:
            return
