"""SQL for consent (issue 18.1, migration 0019): workspaces' notices and recorders' consent
records. Records are append-only: agreeing inserts a row, withdrawing stamps the open rows."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

__all__ = [
    "NOTICE_COLUMNS",
    "RECORD_COLUMNS",
    "agree",
    "consent_state",
    "current_notice",
    "history",
    "lock_workspace",
    "notice_version",
    "set_current",
    "withdraw",
]

Conn = asyncpg.Connection | asyncpg.Pool
NOTICE_COLUMNS = "org_id, workspace_id, version, text, required, recorded, masked, retention_days, created_at"
RECORD_COLUMNS = "consent_id, recorder_id, notice_version, agreed_at, withdrawn_at"


async def current_notice(conn: Conn, org_id: uuid.UUID, workspace_id: uuid.UUID) -> asyncpg.Record | None:
    """The workspace's current notice (every workspace has one from migration 0019 on)."""
    return await conn.fetchrow(
        f"SELECT {NOTICE_COLUMNS} FROM consent_notices WHERE org_id = $1 AND workspace_id = $2 AND is_current",
        org_id, workspace_id)


async def consent_state(conn: Conn, workspace_id: uuid.UUID, recorder_id: uuid.UUID) -> asyncpg.Record | None:
    """(version, required, agreed) of the workspace's current notice for this recorder, in one
    query: `agreed` is whether an open record names that version."""
    return await conn.fetchrow(
        "SELECT n.version, n.required, EXISTS (SELECT 1 FROM consent_records r WHERE r.recorder_id = $2"
        "  AND r.workspace_id = n.workspace_id AND r.notice_version = n.version AND r.withdrawn_at IS NULL)"
        " AS agreed FROM consent_notices n WHERE n.workspace_id = $1 AND n.is_current", workspace_id, recorder_id)


async def history(conn: Conn, recorder_id: uuid.UUID, limit: int = 1000) -> list[asyncpg.Record]:
    """The recorder's records, newest first."""
    return await conn.fetch(
        f"SELECT {RECORD_COLUMNS} FROM consent_records WHERE recorder_id = $1"
        " ORDER BY agreed_at DESC, consent_id LIMIT $2", recorder_id, limit)


async def agree(conn: Conn, org_id: uuid.UUID, workspace_id: uuid.UUID, recorder_id: uuid.UUID,
                version: str) -> asyncpg.Record:
    return await conn.fetchrow(
        "INSERT INTO consent_records (consent_id, org_id, workspace_id, recorder_id, notice_version)"
        f" VALUES ($1, $2, $3, $4, $5) RETURNING {RECORD_COLUMNS}",
        uuid.uuid4(), org_id, workspace_id, recorder_id, version)


async def withdraw(conn: Conn, recorder_id: uuid.UUID) -> list[asyncpg.Record]:
    """Stamp every open record of the recorder (an older version's too, so none can come back
    to life if a workspace returns to that notice); the rows stamped, newest first."""
    rows = await conn.fetch(
        f"UPDATE consent_records SET withdrawn_at = now() WHERE recorder_id = $1 AND withdrawn_at IS NULL"
        f" RETURNING {RECORD_COLUMNS}", recorder_id)
    return sorted(rows, key=lambda r: r["agreed_at"], reverse=True)


async def lock_workspace(conn: asyncpg.Connection, org_id: uuid.UUID, workspace_id: uuid.UUID) -> bool:
    """Serialise notice changes of one workspace (FK checks of other writers are not blocked);
    False when the organisation has no such workspace."""
    found = await conn.fetchval(
        "SELECT true FROM workspaces WHERE org_id = $1 AND workspace_id = $2 FOR NO KEY UPDATE", org_id, workspace_id)
    return bool(found)


async def notice_version(conn: Conn, workspace_id: uuid.UUID, version: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {NOTICE_COLUMNS}, is_current FROM consent_notices WHERE workspace_id = $1 AND version = $2",
        workspace_id, version)


async def set_current(conn: asyncpg.Connection, notice: dict[str, Any], created_by: uuid.UUID | None,
                      *, exists: bool) -> None:
    """Make `notice` (a new version, or one the workspace had) its current one. The caller holds
    lock_workspace and has checked that an existing version's content is the same."""
    workspace_id = notice["workspace_id"]
    await conn.execute("UPDATE consent_notices SET is_current = false WHERE workspace_id = $1 AND is_current"
                       " AND version <> $2", workspace_id, notice["version"])
    if exists:
        await conn.execute("UPDATE consent_notices SET is_current = true WHERE workspace_id = $1 AND version = $2",
                           workspace_id, notice["version"])
        return
    await conn.execute(
        "INSERT INTO consent_notices (org_id, workspace_id, version, text, required, recorded, masked,"
        " retention_days, is_current, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, true, $9)",
        notice["org_id"], workspace_id, notice["version"], notice["text"], notice["required"], notice["recorded"],
        notice["masked"], notice["retention_days"], created_by)
