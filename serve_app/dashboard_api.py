"""The operations dashboard: `GET /v1/stats` (one organisation's numbers, scope `read`) and the
static page that polls it (`/dashboard`, its script and its stylesheet).

The static files hold no data, so they are served without a key; the page takes the key from
the URL fragment (`/dashboard#key=…`, which browsers never send to the server) or from a
password field, keeps it in sessionStorage and sends it as `Authorization: Bearer` to
`/v1/stats`. They are served with a strict Content-Security-Policy: the page has no inline
script or style and fetches nothing from other origins.
"""

from __future__ import annotations

import functools
import math
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Literal

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from actors.errors import InvalidInput, NotFound, details_from_validation_error
from actors.storage import model_usage_repo, stats_repo
from actors.storage.postgres import with_retries
from serve_app.services import Services

__all__ = [
    "CSP", "HISTOGRAM_BINS", "LONG_WINDOW_S", "QUALITY_WINDOW", "SHORT_WINDOW_S", "STATIC_FILES", "STATIC_HEADERS",
    "StatsResponse", "get_stats", "quality_histogram", "static_file",
]

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'"
)
# The dashboard's and the browsing pages' (serve_app/pages_api.py) static files go out with these.
STATIC_HEADERS = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
STATIC_DIR = Path(__file__).parent / "static"
# The page itself goes through serve_app/pages_api.render_page (its shared head and sign-in form).
STATIC_FILES = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
HISTOGRAM_BINS = 10
QUALITY_WINDOW = 200
LONG_WINDOW_S = 60
SHORT_WINDOW_S = 10


class StatusCounts(BaseModel):
    recording: int = 0
    finalizing: int = 0
    ready: int = 0
    rejected: int = 0
    failed: int = 0


class LiveSession(BaseModel):
    session_id: str
    type: str
    status: str
    event_count: int
    screenshot_count: int
    updated_at: datetime


class EventRates(BaseModel):
    last_60s: int = Field(description="events stored (committed) in the last 60 s")
    last_10s: int = Field(description="events stored in the last 10 s")
    per_s_60s: float = Field(description="last_60s / 60")
    per_s_10s: float = Field(description="last_10s / 10: the current rate")


class HistogramBin(BaseModel):
    lo: float
    hi: float = Field(description="exclusive, except the last bin, which includes 1.0")
    count: int


class QualityDistribution(BaseModel):
    window: int = Field(description="at most this many of the newest finalised sessions (by creation)")
    sessions: int = Field(description="finalised sessions in the window")
    ready: int
    rejected: int
    failed: int
    scored: int = Field(description="sessions in the window with a quality score (the histogram's total)")
    mean: float | None
    bins: list[HistogramBin] = Field(description=f"{HISTOGRAM_BINS} bins of quality.overall over [0, 1]")


class ModelUsage(BaseModel):
    kind: Literal["vision", "card", "moderation"]
    calls: int = Field(description="answered calls and batch lines of this workspace's sessions (cache hits not counted)")
    batch_lines: int = Field(description="of them, answered as Batch API lines (cards; vision lines are in calls)")
    tokens_in: int
    tokens_out: int
    cost_usd: float = Field(description="estimated from the typed prices, batch lines at batching.discount; "
                                        "moderation is free on OpenAI")
    queued_lines: int = Field(description="lines in batches not finished yet (the cluster's, every workspace)")
    open_batches: int


class Backlog(BaseModel):
    finalizing: int = Field(description="sessions finished and waiting for (or in) finalisation")
    models: list[ModelUsage] = Field(description="model calls per kind: what they used and cost, what waits")


class Job(BaseModel):
    kind: Literal["dataset", "finetune"]
    job_id: str | None
    status: str | None
    created_at: datetime | None
    updated_at: datetime | None


class LiveSessions(BaseModel):
    count: int = Field(description="sessions recording now")
    recent: list[LiveSession] = Field(description="the most recently updated of them")


class StatsResponse(BaseModel):
    generated_at: datetime = Field(description="the database's clock when the numbers were read")
    statuses: StatusCounts
    live: LiveSessions
    events: EventRates
    quality: QualityDistribution
    backlog: Backlog
    jobs: list[Job] = Field(description="dataset builds and fine-tunes, newest first; empty until they exist")


class _StatsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(20, ge=1, le=100, description="how many live sessions to list")


def _stats_query(request: Request) -> _StatsQuery:
    params: dict[str, Any] = dict(request.query_params)
    value = params.get("limit")
    if isinstance(value, str) and value.lstrip("-").isdigit() and len(value) < 20:
        params["limit"] = int(value)
    try:
        return _StatsQuery.model_validate(params)
    except ValidationError as exc:
        raise InvalidInput("invalid query parameters", details_from_validation_error(exc, "query")) from None


def quality_histogram(values: Iterable[float], bins: int = HISTOGRAM_BINS) -> list[dict[str, Any]]:
    """Counts of scores in `bins` equal bins over [0, 1]; 1.0 falls in the last bin, values
    outside [0, 1] are clamped, NaN is ignored."""
    counts = [0] * bins
    for value in values:
        if value is None or math.isnan(value):
            continue
        index = min(bins - 1, max(0, math.floor(value * bins)))
        counts[index] += 1
    return [{"lo": round(i / bins, 6), "hi": round((i + 1) / bins, 6), "count": n} for i, n in enumerate(counts)]


def _quality(rows: list[Any], window: int) -> dict[str, Any]:
    by_status = {status: 0 for status in stats_repo.FINAL_STATUSES}
    scores: list[float] = []
    for row in rows:
        by_status[row["status"]] = by_status.get(row["status"], 0) + 1
        if row["quality_overall"] is not None:
            scores.append(float(row["quality_overall"]))
    return {
        "window": window,
        "sessions": len(rows),
        **by_status,
        "scored": len(scores),
        "mean": round(sum(scores) / len(scores), 4) if scores else None,
        "bins": quality_histogram(scores),
    }


async def get_stats(services: Services, request: Request) -> dict[str, Any]:
    principal = await services.authorize(request)
    query = _stats_query(request)
    pool = await services.db()
    snap = await with_retries(
        lambda: stats_repo.snapshot(
            pool, principal.workspace_id, live_limit=query.limit, quality_window=QUALITY_WINDOW,
            long_window_s=LONG_WINDOW_S, short_window_s=SHORT_WINDOW_S,
        ),
        attempts=2, what="dashboard stats",
    )
    cards, batching = services.settings.cards, services.settings.batching
    models = await with_retries(
        lambda: model_usage_repo.model_usage(pool, principal.workspace_id,
                                             (cards.price_input_per_1m, cards.price_output_per_1m), batching.discount),
        attempts=2, what="model usage",
    )
    return {
        "generated_at": snap.now,
        "statuses": snap.status_counts,
        "live": {
            "count": snap.status_counts["recording"],
            "recent": [
                {
                    "session_id": str(r["session_id"]),
                    "type": r["type"],
                    "status": r["status"],
                    "event_count": r["event_count"],
                    "screenshot_count": r["screenshot_count"],
                    "updated_at": r["updated_at"],
                }
                for r in snap.live
            ],
        },
        "events": {
            "last_60s": snap.events_long,
            "last_10s": snap.events_short,
            "per_s_60s": round(snap.events_long / LONG_WINDOW_S, 2),
            "per_s_10s": round(snap.events_short / SHORT_WINDOW_S, 2),
        },
        "quality": _quality(snap.recent_final, QUALITY_WINDOW),
        "backlog": {"finalizing": snap.status_counts["finalizing"], "models": models},
        "jobs": snap.jobs,
    }


@functools.lru_cache(maxsize=len(STATIC_FILES))
def _read_static(name: str) -> bytes:
    return (STATIC_DIR / name).read_bytes()


def static_file(name: str) -> Response:
    """One of the dashboard's static files, with the CSP; no key needed (they hold no data)."""
    media_type = STATIC_FILES.get(name)
    if media_type is None:
        raise NotFound(f"no dashboard file {name[:64]!r}")
    return Response(
        content=_read_static(name),
        media_type=media_type,
        headers=STATIC_HEADERS,
    )
