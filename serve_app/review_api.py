"""The review workflow: flag a session or one step, move flags `pending → reviewed → resolved`,
and the review queue (actors/storage/review_repo.py). Flagging, moving flags and the queue
need the `review` scope (admin implies it); reading a session's flags needs `read`."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from actors.errors import InvalidInput, NotFound, details_from_validation_error
from actors.storage import review_repo
from actors.storage.postgres import with_retries
from serve_app.http_io import read_json, session_uuid
from serve_app.search_api import SessionItem, query_of
from serve_app.services import Services

__all__ = ["body_inline", "FlagCreate", "FlagList", "FlagUpdate", "FlagView", "QueueItem", "QueueList", "QueueQuery",
           "create_flag", "list_flags", "review_queue", "update_flag"]

MAX_BODY_BYTES = 16 * 1024
MAX_NOTE_CHARS = 2000


class FlagCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seq: int | None = Field(None, ge=0, le=2**53, description="the step's seq; null flags the whole session")
    reason: review_repo.Reason
    note: str | None = Field(None, max_length=MAX_NOTE_CHARS)


class FlagUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: Literal["reviewed", "resolved"] = Field(description="pending → reviewed → resolved, one step at a time")
    note: str | None = Field(None, max_length=MAX_NOTE_CHARS, description="replaces the flag's note")


class FlagView(BaseModel):
    flag_id: str
    session_id: str
    seq: int | None
    reason: str
    note: str | None
    state: str
    created_by: str = Field(description="the key (or account) that flagged")
    created_at: str
    reviewed_by: str | None
    reviewed_at: str | None
    resolved_by: str | None
    resolved_at: str | None
    note_sentiment: dict[str, Any] | None = Field(None, description="the note's polarity (-1..1), "
                                                  "confidence and label by the VADER lexicon; null without a note")


class FlagList(BaseModel):
    items: list[FlagView]


class QueueItem(SessionItem):
    why: list[str] = Field(description="why it is in the queue: pending flags, frustration, low quality")


class QueueList(BaseModel):
    items: list[QueueItem]


class QueueQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    limit: int = Field(25, ge=1, le=100)
    quality_below: float = Field(0.5, ge=0, le=1, description="unflagged sessions scored under this are listed")


def body_inline(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of a flat model, inline (no shared component needed)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


def _body(raw: Any, model: type[Any], what: str) -> Any:
    if not isinstance(raw, dict):
        raise InvalidInput(f"invalid {what}", [{"field": None, "error": "must be a JSON object"}])
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise InvalidInput(f"invalid {what}", details_from_validation_error(exc)) from None


def _flag_uuid(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound(f"no flag {raw[:64]!r}") from None


def _actor(principal: Any) -> uuid.UUID:
    """Who acted: the signed-in account once people have them (issue 17), else the key."""
    return getattr(principal, "account_id", None) or principal.key_id


async def create_flag(services: Services, request: Request, raw_id: str) -> JSONResponse:
    principal = await services.authorize(request)
    session_id = session_uuid(raw_id)
    body: FlagCreate = _body(await read_json(request, MAX_BODY_BYTES), FlagCreate, "flag")
    pool = await services.db()
    flag = await review_repo.create_flag(pool, principal.org_id, session_id, seq=body.seq, reason=body.reason,
                                         note=body.note, actor=_actor(principal),
                                         workspace_id=principal.workspace_id)
    return JSONResponse(flag, status_code=201)


async def list_flags(services: Services, request: Request, raw_id: str) -> dict[str, Any]:
    principal = await services.authorize(request)
    session_id = session_uuid(raw_id)
    pool = await services.db()
    items = await with_retries(lambda: review_repo.list_flags(pool, principal.org_id, session_id,
                                                              principal.workspace_id),
                               attempts=2, what="flags read")
    return {"items": items}


async def update_flag(services: Services, request: Request, raw_id: str) -> dict[str, Any]:
    principal = await services.authorize(request)
    flag_id = _flag_uuid(raw_id)
    body: FlagUpdate = _body(await read_json(request, MAX_BODY_BYTES), FlagUpdate, "flag update")
    pool = await services.db()
    return await review_repo.move_flag(pool, principal.org_id, flag_id, state=body.state, note=body.note,
                                       actor=_actor(principal), workspace_id=principal.workspace_id)


async def review_queue(services: Services, request: Request) -> dict[str, Any]:
    principal = await services.authorize(request)
    query = query_of(request, QueueQuery)
    pool = await services.db()
    items = await with_retries(
        lambda: review_repo.review_queue(pool, principal.org_id, quality_below=query.quality_below,
                                         limit=query.limit, workspace_id=principal.workspace_id),
        attempts=2, what="review queue")
    return {"items": items}
