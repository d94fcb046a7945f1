"""SQL of live updates: the events log that migration 0014's trigger writes (and NOTIFYs on
channel `tracemill_live` in the same transaction as the change), read back for catch-up.

Event ids come from a sequence, which hands them out before commit: a transaction that took
id 41 may commit just after the one that took id 42, so a client that saw 42 and reconnects
with `since=42` would never see 41. Catch-up therefore also returns the events created within
`OVERLAP_S` before the `since` event; clients ignore ids they have seen.

A deleted session (migration 0017: `sessions.deleted_at`, set by a session's or its recorder's
delete) keeps its log rows until the purge removes them with its other rows; catch-up leaves
them out, so a reconnect never names a session that reads now answer 404 for.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

__all__ = ["CHANNEL", "OVERLAP_S", "LiveEvent", "events_after", "latest_id", "parse_notification", "prune"]

CHANNEL = "tracemill_live"
OVERLAP_S = 5.0
KINDS = ("session.created", "session.finalized")

Conn = asyncpg.Connection | asyncpg.Pool


@dataclass(frozen=True)
class LiveEvent:
    event_id: int
    org_id: uuid.UUID
    kind: str
    session_id: uuid.UUID
    status: str
    quality: float | None
    at: str | None = None  # when the change was written (ISO 8601), for the delay measurement
    workspace_id: uuid.UUID | None = None  # None: sessions have no workspace (before migration 0009)

    def visible_in(self, workspace_id: uuid.UUID | None) -> bool:
        return workspace_id is None or self.workspace_id is None or self.workspace_id == workspace_id

    def data(self) -> dict[str, Any]:
        return {"session_id": str(self.session_id), "status": self.status, "quality": self.quality, "at": self.at}


def _of_row(row: Any) -> LiveEvent:
    created: datetime = row["created_at"]
    return LiveEvent(int(row["event_id"]), row["org_id"], row["kind"], row["session_id"], row["status"],
                     row["quality"], created.isoformat(), row["workspace_id"])


def parse_notification(payload: str) -> LiveEvent | None:
    """The event a NOTIFY carried, or None when the payload is not one of ours."""
    try:
        raw = json.loads(payload)
        kind = str(raw["kind"])
        if kind not in KINDS:
            return None
        quality, workspace = raw.get("quality"), raw.get("workspace_id")
        return LiveEvent(int(raw["event_id"]), uuid.UUID(str(raw["org_id"])), kind,
                         uuid.UUID(str(raw["session_id"])), str(raw["status"]),
                         None if quality is None else float(quality), raw.get("at"),
                         None if workspace is None else uuid.UUID(str(workspace)))
    except (ValueError, KeyError, TypeError):
        return None


async def events_after(conn: Conn, org_id: uuid.UUID, since: int, limit: int,
                       workspace_id: uuid.UUID | None = None) -> list[LiveEvent]:
    """The organisation's (workspace's) events after `since` and those of the overlap before it,
    oldest first; none of a deleted session."""
    # The overlap's lower bound: the smallest id written in the OVERLAP_S before the `since`
    # event (ids and clock_timestamp() are taken together, so the range scan is short).
    rows = await conn.fetch(
        "WITH anchor AS (SELECT created_at FROM live_events WHERE event_id = $2),"
        " low AS (SELECT coalesce(min(e.event_id), $2 + 1) AS id FROM live_events e, anchor"
        "   WHERE e.created_at BETWEEN anchor.created_at - make_interval(secs => $4) AND anchor.created_at)"
        " SELECT event_id, org_id, workspace_id, kind, session_id, status, quality, created_at FROM live_events l"
        " WHERE org_id = $1 AND event_id >= least((SELECT id FROM low), $2 + 1) AND event_id <> $2"
        "   AND ($5::uuid IS NULL OR workspace_id IS NULL OR workspace_id = $5)"
        "   AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.session_id = l.session_id AND s.deleted_at IS NOT NULL)"
        " ORDER BY event_id LIMIT $3",
        org_id, since, limit, OVERLAP_S, workspace_id,
    )
    return [_of_row(r) for r in rows]


async def latest_id(conn: Conn, org_id: uuid.UUID) -> int:
    """The organisation's newest event id (0 when it has none): where a fresh stream starts."""
    value = await conn.fetchval("SELECT max(event_id) FROM live_events WHERE org_id = $1", org_id)
    return int(value or 0)


async def prune(conn: Conn, retention_s: int) -> int:
    """Delete events older than the retention; how many went."""
    status = await conn.execute(
        "DELETE FROM live_events WHERE created_at < now() - make_interval(secs => $1)", float(retention_s)
    )
    return int(status.split()[-1])
