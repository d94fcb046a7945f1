"""SQL of the operations dashboard: one workspace's sessions at a glance.

Every query is bounded, because the dashboard polls every few seconds while ingest runs:

- status counts and the live list use `sessions_workspace_status_idx` (workspace_id, status, …);
- the event rate reads only sessions updated inside the window (the group commit sets
  `updated_at` in the same transaction that inserts the events, so a session with events
  received in the window was updated in it) and, per session, at most `per_session_cap` of its
  newest events by primary key: interactions has no index on `received_at`;
- the quality window reads at most `window` rows per final status through the same index.

All queries of one snapshot run in one read-only REPEATABLE READ transaction, so the numbers
agree with each other.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg

__all__ = ["FINAL_STATUSES", "JOB_TABLES", "STATUSES", "Snapshot", "snapshot"]

STATUSES = ("recording", "finalizing", "ready", "rejected", "failed")
FINAL_STATUSES = ("ready", "rejected", "failed")
# Tables the dataset and fine-tune jobs will write; listed only once they exist.
JOB_TABLES = {"datasets": "dataset", "finetunes": "finetune"}

Conn = asyncpg.Connection | asyncpg.Pool


@dataclass
class Snapshot:
    now: Any
    status_counts: dict[str, int]
    live: list[asyncpg.Record]
    events_short: int
    events_long: int
    recent_final: list[asyncpg.Record]
    jobs: list[dict[str, Any]] = field(default_factory=list)
    job_tables: list[str] = field(default_factory=list)


_STATUS_COUNTS = "SELECT status, count(*) AS n FROM sessions WHERE workspace_id = $1 AND deleted_at IS NULL GROUP BY status"

_LIVE = (
    "SELECT session_id, type, status, event_count, screenshot_count, updated_at FROM sessions"
    " WHERE workspace_id = $1 AND deleted_at IS NULL AND status = 'recording' ORDER BY updated_at DESC LIMIT $2"
)

# $2 long window (s), $3 short window (s), $4 most sessions read, $5 most events per session.
_EVENTS = """
SELECT count(*) FILTER (WHERE e.received_at >= now() - make_interval(secs => $3)) AS short,
       count(*) AS long
FROM (SELECT session_id FROM sessions
      WHERE workspace_id = $1 AND deleted_at IS NULL AND updated_at >= now() - make_interval(secs => $2)
      ORDER BY updated_at DESC LIMIT $4) s
CROSS JOIN LATERAL (
    SELECT i.received_at FROM interactions i
    WHERE i.session_id = s.session_id
    ORDER BY i.seq DESC LIMIT $5) e
WHERE e.received_at >= now() - make_interval(secs => $2)
"""

# One index range per final status, newest first, then the newest `$2` of their union.
_RECENT_FINAL = " UNION ALL ".join(
    f"(SELECT status, quality_overall, created_at FROM sessions"
    f" WHERE workspace_id = $1 AND deleted_at IS NULL AND status = '{status}' ORDER BY created_at DESC LIMIT $2)"
    for status in FINAL_STATUSES
) + " ORDER BY created_at DESC LIMIT $2"

_JOB_TABLES = (
    "SELECT table_name,"
    " array_agg(column_name::text) AS columns"
    " FROM information_schema.columns"
    " WHERE table_schema = current_schema() AND table_name = ANY($1::text[])"
    " GROUP BY table_name"
)


async def snapshot(
    pool: asyncpg.Pool,
    workspace_id: uuid.UUID,
    *,
    live_limit: int = 20,
    quality_window: int = 200,
    long_window_s: float = 60.0,
    short_window_s: float = 10.0,
    max_sessions: int = 500,
    per_session_cap: int = 20_000,
    jobs_limit: int = 20,
) -> Snapshot:
    """Everything the dashboard shows for one workspace, read consistently."""
    async with pool.acquire() as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            now = await conn.fetchval("SELECT now()")
            counts = {r["status"]: int(r["n"]) for r in await conn.fetch(_STATUS_COUNTS, workspace_id)}
            live = list(await conn.fetch(_LIVE, workspace_id, live_limit))
            events = await conn.fetchrow(
                _EVENTS, workspace_id, long_window_s, short_window_s, max_sessions, per_session_cap
            )
            recent = list(await conn.fetch(_RECENT_FINAL, workspace_id, quality_window))
            jobs, tables = await _jobs(conn, workspace_id, jobs_limit)
    return Snapshot(
        now=now,
        status_counts={status: counts.get(status, 0) for status in STATUSES},
        live=live,
        events_short=int(events["short"]),
        events_long=int(events["long"]),
        recent_final=recent,
        jobs=jobs,
        job_tables=tables,
    )


async def _jobs(conn: asyncpg.Connection, workspace_id: uuid.UUID, limit: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Recent dataset and fine-tune jobs, once their tables exist.

    The tables are not there yet; when they appear, rows are listed only if the table has an
    `workspace_id` column (never another workspace's jobs) and are read generically: an id
    (`<kind>_id`, `job_id` or `id`), `status`, `created_at`, `updated_at` when present.
    """
    tables = {r["table_name"]: set(r["columns"]) for r in await conn.fetch(_JOB_TABLES, list(JOB_TABLES))}
    jobs: list[dict[str, Any]] = []
    for table, kind in JOB_TABLES.items():
        columns = tables.get(table)
        if not columns or "workspace_id" not in columns:
            continue
        order = "created_at DESC" if "created_at" in columns else "1"
        # `table` comes from JOB_TABLES, never from the request.
        rows = await conn.fetch(f"SELECT * FROM {table} WHERE workspace_id = $1 ORDER BY {order} LIMIT $2", workspace_id, limit)
        for row in rows:
            job_id = next((row[c] for c in (f"{kind}_id", "job_id", "id") if c in columns), None)
            jobs.append({
                "kind": kind,
                "job_id": None if job_id is None else str(job_id),
                "status": str(row["status"]) if "status" in columns and row["status"] is not None else None,
                "created_at": row["created_at"] if "created_at" in columns else None,
                "updated_at": row["updated_at"] if "updated_at" in columns else None,
            })
    jobs.sort(key=lambda j: (j["created_at"] is not None, j["created_at"]), reverse=True)
    return jobs[:limit], sorted(tables)
