"""SQL of `GET /v1/analytics/trends`: one metric of an organisation's sessions, grouped by day
(of their start, UTC), site, intent or session type, over a time window.

The window is on `coalesce(started_at, created_at)`, the key of `sessions_org_started_idx`
(migration 0008), so a query reads the window's rows of one organisation and no more. Rates
count finalised sessions only (ready or rejected; failed ones were never scored).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

import asyncpg

__all__ = ["GROUPS", "METRICS", "Metric", "GroupBy", "MAX_GROUPS", "trend_points"]

Metric = Literal["sessions", "events", "mean_quality", "rejection_rate", "frustration_rate"]
GroupBy = Literal["day", "site", "intent", "session_type"]
MAX_GROUPS = 100  # sites and intents: the largest groups; days: the whole window (≤ 366)

_SCORED = "s.status IN ('ready', 'rejected')"
# metric → (value, count): both aggregate expressions over the window's sessions.
METRICS: dict[str, tuple[str, str]] = {
    "sessions": ("count(*)", "count(*)"),
    "events": ("coalesce(sum(s.event_count), 0)", "count(*)"),
    "mean_quality": ("avg(s.quality_overall)", "count(s.quality_overall)"),
    "rejection_rate": (f"(count(*) FILTER (WHERE s.status = 'rejected'))::float8"
                       f" / nullif(count(*) FILTER (WHERE {_SCORED}), 0)",
                       f"count(*) FILTER (WHERE {_SCORED})"),
    "frustration_rate": (f"(count(*) FILTER (WHERE {_SCORED} AND s.frustration > 0))::float8"
                         f" / nullif(count(*) FILTER (WHERE {_SCORED}), 0)",
                         f"count(*) FILTER (WHERE {_SCORED})"),
}
GROUPS: dict[str, str] = {
    "day": "to_char(coalesce(s.started_at, s.created_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
    "site": "coalesce(s.site, '(none)')",
    "intent": "coalesce(s.intent, '(none)')",
    "session_type": "s.type",
}


async def trend_points(conn: asyncpg.Pool | asyncpg.Connection, org_id: uuid.UUID, metric: Metric,
                       group_by: GroupBy, since: datetime, until: datetime,
                       workspace_id: uuid.UUID | None = None) -> list[dict[str, Any]]:
    """[{key, value, count}]: days in order, other groups largest first. A group whose metric
    has nothing to count (a rate over no finalised session) is left out, not reported as 0."""
    value, count = METRICS[metric]
    order = "key" if group_by == "day" else "count DESC, key"
    rows = await conn.fetch(
        f"SELECT {GROUPS[group_by]} AS key, ({value})::float8 AS value, {count} AS count"
        " FROM sessions s WHERE s.org_id = $1 AND ($4::uuid IS NULL OR s.workspace_id = $4) AND s.deleted_at IS NULL"
        " AND coalesce(s.started_at, s.created_at) >= $2 AND coalesce(s.started_at, s.created_at) < $3"
        f" GROUP BY 1 ORDER BY {order} LIMIT {MAX_GROUPS if group_by != 'day' else 400}",
        org_id, since, until, workspace_id,
    )
    return [{"key": r["key"], "value": round(r["value"], 6), "count": r["count"]}
            for r in rows if r["count"] and r["value"] is not None]
