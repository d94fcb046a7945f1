"""SQL of the append-only audit log (migration 0010: a trigger refuses UPDATE, DELETE, TRUNCATE)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import asyncpg

__all__ = ["AuditFilter", "insert_entry", "query", "signin_failures"]

Conn = asyncpg.Pool | asyncpg.Connection
_COLUMNS = ("audit_id, at, org_id, workspace_id, actor_kind, actor_id, action, outcome, target,"
            " host(address) AS address, request_id, details")


async def insert_entry(conn: Conn, entry: dict[str, Any]) -> int:
    return await conn.fetchval(
        "INSERT INTO audit_log (org_id, workspace_id, actor_kind, actor_id, action, outcome, target, address,"
        " request_id, subject, details) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::inet, $9, $10, $11::jsonb)"
        " RETURNING audit_id",
        entry.get("org_id"), entry.get("workspace_id"), entry["actor_kind"], entry.get("actor_id"),
        entry["action"], entry["outcome"], entry.get("target"), entry.get("address"), entry.get("request_id"),
        entry.get("subject"), json.dumps(entry.get("details") or {}),
    )


async def signin_failures(conn: Conn, address: str | None, subject: str, window_s: int) -> dict[str, Any]:
    """Failed sign-ins within the window, by address and by subject, with the oldest of each
    (a lockout lasts until the oldest counted failure leaves the window)."""
    row = await conn.fetchrow(
        "SELECT count(*) FILTER (WHERE address = $1::inet) AS by_address,"
        " min(at) FILTER (WHERE address = $1::inet) AS oldest_address,"
        " count(*) FILTER (WHERE subject = $2) AS by_subject,"
        " min(at) FILTER (WHERE subject = $2) AS oldest_subject,"
        " now() AS now"
        " FROM audit_log WHERE action = 'signin.failure' AND outcome = 'failure'"
        " AND at > now() - make_interval(secs => $3) AND (address = $1::inet OR subject = $2)",
        address, subject, float(window_s),
    )
    return dict(row)


class AuditFilter:
    """What GET /v1/audit may filter on; every field optional."""

    def __init__(self, *, action: str | None = None, outcome: str | None = None, actor_id: str | None = None,
                 since: datetime | None = None, until: datetime | None = None, before_id: int | None = None,
                 workspace_id: uuid.UUID | None = None, visible_workspace: uuid.UUID | None = None,
                 visible_actor: str | None = None):
        self.action, self.outcome, self.actor_id = action, outcome, actor_id
        self.since, self.until, self.before_id, self.workspace_id = since, until, before_id, workspace_id
        # Not a filter the caller chooses: when set, only this workspace's entries and the
        # visible actor's own (an admin sees its workspace, not the whole organisation).
        self.visible_workspace, self.visible_actor = visible_workspace, visible_actor


async def query(conn: Conn, org_id: uuid.UUID, flt: AuditFilter, limit: int) -> list[dict[str, Any]]:
    """Newest first, `limit` entries of the organisation (or of its visible workspace and actor),
    from before `before_id` (the cursor).
    `action` matches exactly, or a whole family with a trailing `.*` (`signin.*`)."""
    action = flt.action
    prefix = action[:-1] if action and action.endswith(".*") else None
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM audit_log WHERE org_id = $1"
        " AND ($2::text IS NULL OR action = $2) AND ($3::text IS NULL OR starts_with(action, $3))"
        " AND ($4::text IS NULL OR outcome = $4) AND ($5::text IS NULL OR actor_id = $5)"
        " AND ($6::timestamptz IS NULL OR at >= $6) AND ($7::timestamptz IS NULL OR at < $7)"
        " AND ($8::bigint IS NULL OR audit_id < $8) AND ($9::uuid IS NULL OR workspace_id = $9)"
        " AND ($11::uuid IS NULL OR workspace_id = $11 OR actor_id = $12)"
        " ORDER BY audit_id DESC LIMIT $10",
        org_id, None if prefix else action, prefix, flt.outcome, flt.actor_id, flt.since, flt.until,
        flt.before_id, flt.workspace_id, limit, flt.visible_workspace, flt.visible_actor,
    )
    out = []
    for r in rows:
        item = dict(r)
        item["details"] = json.loads(item["details"]) if isinstance(item["details"], str) else item["details"]
        out.append(item)
    return out
