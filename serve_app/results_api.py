"""What finalisation produced: a session's stored (redacted) events, paged, and its archive.

Both are exports: each archive download, and each read of the events from the start (the first
page; the pages after it are the same export), is an `export.download` audit entry."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from actors.accounts.audit import actor_of, audit
from actors.auth import Principal
from actors.errors import InvalidInput, NotFound, details_from_validation_error
from actors.ingest.rows import as_event
from actors.storage import processing_repo
from actors.storage.postgres import with_retries
from serve_app.sessions_api import readable_session_of
from serve_app.services import Services

__all__ = ["EventsPage", "get_archive", "get_events"]


class EventsPage(BaseModel):
    events: list[dict[str, Any]] = Field(description="stored events in seq order, after redaction")
    next_after_seq: int | None = Field(description="pass as after_seq for the next page; null at the end")


class _PageQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    after_seq: int = Field(-1, ge=-1, le=2**53)
    limit: int = Field(500, ge=1)


def _page_query(request: Request, max_limit: int) -> _PageQuery:
    params: dict[str, Any] = dict(request.query_params)
    for name in ("after_seq", "limit"):
        value = params.get(name)
        if isinstance(value, str) and value.lstrip("-").isdigit() and len(value) < 20:
            params[name] = int(value)
    try:
        query = _PageQuery.model_validate(params)
    except ValidationError as exc:
        raise InvalidInput("invalid query parameters", details_from_validation_error(exc, "query")) from None
    if query.limit > max_limit:
        raise InvalidInput("invalid query parameters",
                           [{"field": "query.limit", "error": f"at most {max_limit}"}])
    return query


async def get_events(services: Services, request: Request, raw_id: str) -> dict[str, Any]:
    principal, _, session_id = await readable_session_of(services, request, raw_id)
    query = _page_query(request, services.settings.processing.events_page_max)
    pool = await services.db()
    rows = await with_retries(
        lambda: processing_repo.event_rows(pool, session_id, query.after_seq, query.limit + 1),
        attempts=2, what="events read",
    )
    more = len(rows) > query.limit
    events = [as_event(r) for r in rows[: query.limit]]
    if query.after_seq < 0:
        await _audit_export(services, principal, session_id, "events", {"events": len(events)})
    return {"events": events, "next_after_seq": events[-1]["seq"] if more else None}


async def get_archive(services: Services, request: Request, raw_id: str) -> Response:
    principal, row, session_id = await readable_session_of(services, request, raw_id)
    if row["archive_key"] is None:
        raise NotFound(f"session {session_id} has no archive yet (status {row['status']})", code="archive_not_ready")
    data = await services.store.get(row["archive_key"])
    await _audit_export(services, principal, session_id, "archive", {"bytes": len(data)})
    return Response(content=data, media_type="application/zip", headers={
        "Content-Disposition": f'attachment; filename="{session_id}.zip"',
        "X-Archive-SHA256": row["archive_sha256"],
    })


async def _audit_export(services: Services, principal: Principal, session_id: Any, what: str,
                        counts: dict[str, int]) -> None:
    """Who took which session's data out: ids and sizes only, never a recorded value."""
    await audit(await services.db(), "export.download", actor_of(principal), target=str(session_id),
                address=services.guard.address(), details={"what": what, **counts})
