"""Sessions and HTTP events: create, read, finish, post a batch."""

from __future__ import annotations

import hashlib
import logging
import json
import time
import uuid
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from actors.errors import InvalidInput, NotFound, Overloaded, QuotaExceeded, TracemillError
from actors import quotas
from actors.auth import Principal
from actors.ingest.events import parse_events
from serve_app.bodies import parse_finish, parse_session_create
from actors.storage import sessions_repo
from actors.storage.postgres import with_retries
from serve_app.http_io import read_json, session_uuid
from serve_app.services import Services
from serve_app.session_access import Owner, visible

log = logging.getLogger(__name__)

__all__ = ["create_session", "finish_session", "get_session", "post_events", "readable_session", "readable_session_of",
           "session_view"]


async def create_session(services: Services, request: Request) -> JSONResponse:
    principal = await services.authorize(request)
    await services.check_consent(principal)  # a recorder without consent starts nothing
    raw = await read_json(request, services.settings.ingest.max_body_bytes)
    body = parse_session_create(raw, services.settings.ingest)
    session_id = body.session_id or uuid.uuid4()
    fields = body.model_dump(exclude={"session_id"}, mode="python")
    # Who owns it (part of the stored hash: a repeat from another key is a conflict, not a reply).
    owner = Owner(principal.org_id, principal.workspace_id, principal.key_id, principal.recorder_id)
    fields |= {"workspace_id": str(owner.workspace_id), "created_by_key": _str_or_none(owner.created_by_key),
               "recorder_id": _str_or_none(owner.recorder_id)}
    canonical = json.dumps(body.model_dump(exclude={"session_id"}, mode="json"), sort_keys=True)
    request_hash = hashlib.sha256(canonical.encode()).digest()
    services.guard.charge_session(principal)
    pool = await services.db()
    taken = await _count_new_session(services, pool, principal.org_id, session_id, repeatable=body.session_id is not None)
    try:
        result = await services.shard(session_id).create_session(principal.org_id, session_id, fields, request_hash)
    except BaseException:
        await quotas.refund(pool, taken)
        raise
    if not result["created"]:  # a repeat of an existing session is no new session
        await quotas.refund(pool, taken)
    else:
        services.owners.remember(session_id, owner)
    status = 201 if result["created"] else 200
    return JSONResponse({"session_id": result["session_id"], "status": result["status"]}, status_code=status)


async def _count_new_session(services: Services, pool: Any, org_id: uuid.UUID, session_id: uuid.UUID, *,
                             repeatable: bool) -> quotas.Charge | None:
    """Count the session against its organisation's daily quota (refunded when it turns out
    to be a repeat). Over the quota, a client retrying the creation of a session it already
    has still gets its idempotent answer; any other creation is refused."""
    try:
        return await quotas.charge(pool, services.settings.quotas, org_id, "sessions_per_day", 1)
    except QuotaExceeded:
        if not repeatable or await sessions_repo.fetch_session(pool, session_id, org_id) is None:
            raise
        return None


async def readable_session(services: Services, request: Request, raw_id: str) -> tuple[Any, uuid.UUID]:
    """The session's row, for a caller allowed this route that may see the session (its
    workspace; for a recorder, one it recorded)."""
    _, row, session_id = await readable_session_of(services, request, raw_id)
    return row, session_id


async def readable_session_of(services: Services, request: Request,
                              raw_id: str) -> tuple[Principal, Any, uuid.UUID]:
    """readable_session with the caller, for handlers that audit what it took (exports)."""
    principal = await services.authorize(request)
    session_id = session_uuid(raw_id)
    pool = await services.db()
    row = await with_retries(
        lambda: sessions_repo.fetch_session(pool, session_id, principal.org_id), attempts=2, what="session read"
    )
    if row is None or not visible(principal, row):
        raise NotFound(f"no session {session_id}")
    return principal, row, session_id


async def get_session(services: Services, request: Request, raw_id: str) -> dict[str, Any]:
    row, _ = await readable_session(services, request, raw_id)
    return session_view(row)


async def finish_session(services: Services, request: Request, raw_id: str) -> JSONResponse:
    principal = await services.authorize(request)
    session_id = session_uuid(raw_id)
    await services.check_session(principal, session_id)
    raw = await read_json(request, services.settings.ingest.max_body_bytes, required=False)
    finish = parse_finish(raw)
    log.info("finish of session %s requested", session_id)
    status = await services.shard(session_id).finish(principal.org_id, session_id, finish.model_dump(mode="python"))
    return JSONResponse({"status": status}, status_code=202)


async def post_events(services: Services, request: Request, raw_id: str) -> dict[str, Any]:
    started = time.perf_counter()
    principal = await services.authorize(request)
    session_id = session_uuid(raw_id)
    await services.check_session(principal, session_id)
    await services.check_consent(principal)
    raw = await read_json(request, services.settings.ingest.max_body_bytes)
    if not isinstance(raw, dict) or "events" not in raw:
        raise InvalidInput(
            "expected an object with an 'events' array",
            [{"field": "events", "error": "field required"}],
        )
    try:
        events = parse_events(raw["events"], services.settings.ingest)
        services.guard.charge_events(principal, len(events))
        services.metrics.record_received("http", len(events))  # as the stream counts them
        ack = await services.shard(session_id).ingest(principal.org_id, session_id, events, services.settings.processing.privacy)
    except Overloaded as exc:
        services.metrics.record_slow_down(exc.code)
        raise
    except TracemillError as exc:
        services.metrics.record_rejected(exc.code)
        raise
    services.metrics.record_ack("http", ack, time.perf_counter() - started)
    return ack


def session_view(row: Any) -> dict[str, Any]:
    quality = None
    if row["quality_overall"] is not None:
        quality = {
            "completeness": row["completeness"],
            "selector_reliability": row["selector_reliability"],
            "screenshot_quality": row["screenshot_quality"],
            "training_value": row["training_value"],
            "overall": row["quality_overall"],
            "reasons": json.loads(row["quality_reasons"]) if row["quality_reasons"] else [],
            "suggestions": json.loads(row["quality_suggestions"]) if row["quality_suggestions"] else [],
        }
    archive = None
    if row["archive_key"] is not None:
        archive = {"key": row["archive_key"], "sha256": row["archive_sha256"], "bytes": row["archive_bytes"]}
    return {
        "session_id": str(row["session_id"]),
        "type": row["type"],
        "status": row["status"],
        "task": row["task"],
        "event_count": row["event_count"],
        "screenshot_count": row["screenshot_count"],
        "duplicate_count": row["duplicate_count"],
        "acked_through": row["acked_through"],
        "max_seq": row["max_seq"],
        "quality": quality,
        "archive": archive,
        "outcome": row["outcome"],
        "finalize_stage": row["finalize_stage"],
        "failure": row["finalize_error"] if row["status"] == "failed" else None,
        "started_at": _iso(row["started_at"]),
        "ended_at": _iso(row["ended_at"]),
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }


def _str_or_none(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()
