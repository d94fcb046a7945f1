"""`GET /v1/analytics/trends`: one metric of the organisation's sessions by day, site, intent or
session type (actors/storage/trends_repo.py). Scope `read`.

Answers are kept for `CACHE_TTL_S` per organisation and query in each ingress replica: a
trends page asks for several metrics at once and every viewer of it again, and the figures
move slowly; a few seconds old is fresh enough, and the database is asked at most once per
query and replica in that time.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from actors.storage import trends_repo
from actors.storage.postgres import with_retries
from serve_app.search_api import query_of
from serve_app.services import Services

__all__ = ["CACHE_TTL_S", "MAX_WINDOW_DAYS", "TrendPoint", "TrendsQuery", "TrendsResponse", "get_trends"]

CACHE_TTL_S = 5.0
CACHE_MAX_ENTRIES = 1000
MAX_WINDOW_DAYS = 366
DEFAULT_WINDOW = timedelta(days=30)


class TrendsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    metric: trends_repo.Metric = "sessions"
    group_by: trends_repo.GroupBy = "day"
    since: datetime | None = Field(None, description="sessions started at or after; default 30 days ago")
    until: datetime | None = Field(None, description="sessions started before; default now")

    @model_validator(mode="after")
    def _window(self) -> TrendsQuery:
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} needs a timezone (e.g. 2026-12-01T00:00:00Z)")
        since, until = self.window(datetime.now(timezone.utc))
        if since >= until:
            raise ValueError("since must be before until")
        if until - since > timedelta(days=MAX_WINDOW_DAYS):
            raise ValueError(f"the window is at most {MAX_WINDOW_DAYS} days")
        return self

    def window(self, now: datetime) -> tuple[datetime, datetime]:
        until = self.until or now
        return self.since or until - DEFAULT_WINDOW, until


class TrendPoint(BaseModel):
    key: str = Field(description="the day (YYYY-MM-DD, UTC), site, intent or session type")
    value: float
    count: int = Field(description="the sessions the value is computed over")


class TrendsResponse(BaseModel):
    metric: str
    group_by: str
    since: datetime
    until: datetime
    points: list[TrendPoint]


_cache: dict[tuple[uuid.UUID, TrendsQuery], tuple[float, dict[str, Any]]] = {}


async def get_trends(services: Services, request: Request) -> dict[str, Any]:
    principal = await services.authorize(request)
    query = query_of(request, TrendsQuery)
    key = (principal.workspace_id, query)
    now = time.monotonic()
    hit = _cache.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    since, until = query.window(datetime.now(timezone.utc))
    pool = await services.db()
    points = await with_retries(
        lambda: trends_repo.trend_points(pool, principal.org_id, query.metric, query.group_by, since, until,
                                         principal.workspace_id),
        attempts=2, what="trends",
    )
    answer = {"metric": query.metric, "group_by": query.group_by, "since": since.isoformat(),
              "until": until.isoformat(), "points": points}
    if len(_cache) >= CACHE_MAX_ENTRIES:
        _cache.clear()
    _cache[key] = (now + CACHE_TTL_S, answer)
    return answer
