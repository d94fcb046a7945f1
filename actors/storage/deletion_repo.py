"""SQL for deletion (issue 18.3): hide a session or a recorder's sessions at once, then purge
them (migration 0017).

A purge of one session runs in steps that can each be repeated: `plan_purge` writes a tombstone
(`purged_sessions`) naming what is to go outside the rows (vision cache entries by image hash,
object keys); `delete_rows` removes the rows (every table that refers to the session cascades
from `sessions`; the live events log and the vision cache by hand), withdraws the datasets that
used the session and flags their models, in one transaction; `finish` stamps the tombstone
once the objects are gone. A purge killed between steps is resumed from the tombstones.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from actors.storage.recorder_data import (datasets_holding_sql, session_image_hashes_sql,
                                          session_object_keys_sql)

__all__ = [
    "delete_recorder",
    "delete_rows",
    "delete_session",
    "due_recorders",
    "due_sessions",
    "finish",
    "plan_purge",
    "purge_recorders",
    "unfinished",
    "withdraw_exports",
]

Conn = asyncpg.Connection | asyncpg.Pool


async def delete_session(conn: Conn, org_id: uuid.UUID, workspace_id: uuid.UUID, session_id: uuid.UUID,
                         grace_s: int) -> asyncpg.Record | None:
    """Hide a session of the workspace; None when there is none (or it is deleted already)."""
    return await conn.fetchrow(
        "UPDATE sessions SET deleted_at = now(), purge_after = now() + make_interval(secs => $4)"
        " WHERE session_id = $1 AND org_id = $2 AND workspace_id = $3 AND deleted_at IS NULL"
        " RETURNING session_id, deleted_at, purge_after", session_id, org_id, workspace_id, grace_s)


async def delete_recorder(conn: asyncpg.Connection, org_id: uuid.UUID, workspace_id: uuid.UUID,
                          recorder_id: uuid.UUID, grace_s: int) -> dict[str, Any] | None:
    """Hide a recorder and every session it recorded, and revoke the keys bound to it (it
    records nothing more). None when the workspace has no such recorder (or it is deleted)."""
    async with conn.transaction():
        row = await conn.fetchrow(
            "UPDATE recorders SET deleted_at = now(), purge_after = now() + make_interval(secs => $4)"
            " WHERE recorder_id = $1 AND org_id = $2 AND workspace_id = $3 AND deleted_at IS NULL"
            " RETURNING recorder_id, deleted_at, purge_after", recorder_id, org_id, workspace_id, grace_s)
        if row is None:
            return None
        sessions = await conn.fetch(
            "UPDATE sessions SET deleted_at = $2, purge_after = $3"
            " WHERE recorder_id = $1 AND deleted_at IS NULL RETURNING session_id",
            recorder_id, row["deleted_at"], row["purge_after"])
        keys = await conn.execute(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE recorder_id = $1", recorder_id)
    return {"recorder_id": recorder_id, "deleted_at": row["deleted_at"], "purge_after": row["purge_after"],
            "sessions": [r["session_id"] for r in sessions], "keys_revoked": int(keys.split()[-1])}


async def due_sessions(conn: Conn, grace_s: int, limit: int) -> list[uuid.UUID]:
    """Deleted sessions whose grace period has passed, oldest deletion first."""
    rows = await conn.fetch(
        "SELECT session_id FROM sessions WHERE deleted_at IS NOT NULL"
        " AND deleted_at <= now() - make_interval(secs => $1) ORDER BY deleted_at LIMIT $2", grace_s, limit)
    return [r["session_id"] for r in rows]


async def unfinished(conn: Conn, limit: int) -> list[asyncpg.Record]:
    """Tombstones of purges that stopped before their end (rows or objects left)."""
    return await conn.fetch(
        "SELECT session_id, org_id, workspace_id, recorder_id, rows_done, image_sha256, object_keys"
        " FROM purged_sessions WHERE purged_at IS NULL ORDER BY deleted_at LIMIT $1", limit)


async def plan_purge(conn: asyncpg.Connection, session_id: uuid.UUID) -> asyncpg.Record | None:
    """The tombstone of a deleted session, written once (a repeat returns the first)."""
    await conn.execute(
        "INSERT INTO purged_sessions (session_id, org_id, workspace_id, recorder_id, deleted_at,"
        " image_sha256, object_keys)"
        " SELECT s.session_id, s.org_id, s.workspace_id, s.recorder_id, s.deleted_at,"
        "  " + session_image_hashes_sql("s.session_id") + ", "
        + session_object_keys_sql("s.session_id", "s.archive_key") +
        " FROM sessions s WHERE s.session_id = $1 AND s.deleted_at IS NOT NULL"
        " ON CONFLICT (session_id) DO NOTHING", session_id)
    return await conn.fetchrow(
        "SELECT session_id, org_id, workspace_id, recorder_id, rows_done, image_sha256, object_keys"
        " FROM purged_sessions WHERE session_id = $1", session_id)


async def delete_rows(conn: asyncpg.Connection, session_id: uuid.UUID, image_sha256: list[str]) -> dict[str, int]:
    """Remove the session's rows everywhere, withdraw the datasets that used it and flag the
    models trained on them; one transaction, harmless to repeat."""
    async with conn.transaction():
        datasets = await conn.fetch(
            "UPDATE datasets SET withdrawn_at = coalesce(withdrawn_at, now()),"
            " withdrawn_reason = coalesce(withdrawn_reason, 'held a deleted session'), updated_at = now()"
            " WHERE " + datasets_holding_sql("ARRAY[$1]::uuid[]") +
            " RETURNING dataset_id, files", session_id)
        ids = [d["dataset_id"] for d in datasets]
        models = await conn.execute(
            "UPDATE models SET flagged_at = coalesce(flagged_at, now()),"
            " flag_reason = coalesce(flag_reason, 'trained on a dataset withdrawn after a deletion')"
            " WHERE dataset_id = ANY($1::uuid[])", ids)
        # The dataset files are withdrawn: their keys join the tombstone's, whose objects the
        # caller removes after this commits (a purge killed before that finds them there).
        files = [f["key"] for d in datasets for f in _files(d["files"]) if f.get("key")]
        await conn.execute("UPDATE datasets SET files = '{}'::jsonb WHERE dataset_id = ANY($1::uuid[])", ids)
        await conn.execute("DELETE FROM vision_cache WHERE image_sha256 = ANY($1::text[])", image_sha256)
        await conn.execute("DELETE FROM live_events WHERE session_id = $1", session_id)
        gone = await conn.execute("DELETE FROM sessions WHERE session_id = $1", session_id)  # the rest cascades
        await conn.execute("UPDATE purged_sessions SET rows_done = true, object_keys = object_keys || $2::text[]"
                           " WHERE session_id = $1", session_id, files)
    return {"sessions": int(gone.split()[-1]), "datasets": len(ids), "models": int(models.split()[-1])}


def _files(raw: Any) -> list[dict[str, Any]]:
    import json

    files = json.loads(raw) if isinstance(raw, str) else (raw or {})
    return [v for v in files.values() if isinstance(v, dict)]


async def finish(conn: Conn, session_id: uuid.UUID) -> None:
    """The purge of the session is complete: the tombstone keeps its id and dates, and drops the
    image hashes and keys it needed (a hash of a picture is a fingerprint of it)."""
    await conn.execute("UPDATE purged_sessions SET purged_at = now(), image_sha256 = '{}', object_keys = '{}'"
                       " WHERE session_id = $1", session_id)


async def due_recorders(conn: Conn, grace_s: int) -> list[asyncpg.Record]:
    """Deleted recorders past their grace whose sessions are all purged: (recorder_id, org_id)."""
    return await conn.fetch(
        "SELECT recorder_id, org_id FROM recorders r WHERE deleted_at IS NOT NULL"
        " AND deleted_at <= now() - make_interval(secs => $1)"
        " AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.recorder_id = r.recorder_id)", grace_s)


async def withdraw_exports(conn: Conn, recorder_id: uuid.UUID) -> None:
    """The recorder's exports lose their ZIP (the caller removed the objects): a ZIP may hold a
    session being purged. The rows stay, failed, until the recorder goes."""
    await conn.execute(
        "UPDATE exports SET status = 'failed', object_key = NULL,"
        " error = 'withdrawn: a session it may hold was deleted', finished_at = coalesce(finished_at, now()),"
        " updated_at = now() WHERE recorder_id = $1 AND status <> 'failed'", recorder_id)


async def purge_recorders(conn: asyncpg.Connection, grace_s: int) -> int:
    """Deleted recorders past their grace whose sessions are all purged: their keys lose the
    link, their exports' rows go (the objects were removed first) and the row (its name may
    name a person) goes."""
    async with conn.transaction():
        due = [r["recorder_id"] for r in await due_recorders(conn, grace_s)]
        await conn.execute("UPDATE api_keys SET recorder_id = NULL WHERE recorder_id = ANY($1::uuid[])", due)
        await conn.execute("DELETE FROM exports WHERE recorder_id = ANY($1::uuid[])", due)
        await conn.execute("DELETE FROM recorders WHERE recorder_id = ANY($1::uuid[])", due)
    return len(due)
