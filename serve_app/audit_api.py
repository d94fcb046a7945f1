"""`GET /v1/audit`: the organisation's audit trail, newest first, filterable and paginated.

For owners and admins (audit.read): an owner reads the whole organisation's trail, an admin
only its workspace's entries and its own actions (wherever they landed). The cursor is the
last entry's id: entries are append-only and ids only grow, so a page never shifts under a
reader while new entries arrive.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from actors.accounts.audit import actor_of
from actors.errors import InvalidInput, details_from_validation_error
from actors.storage import audit_repo
from actors.storage.postgres import with_retries
from serve_app.services import Services

__all__ = ["AUDIT_PARAMETERS", "AuditEntry", "AuditPage", "AuditQuery", "list_audit"]


class AuditQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: str | None = Field(None, pattern=r"^[a-z_]+\.([a-z_]+|\*)$", description="e.g. signin.failure or signin.*")
    outcome: Literal["success", "failure", "refused"] | None = None
    actor_id: str | None = Field(None, max_length=64)
    workspace_id: uuid.UUID | None = None
    since: datetime | None = None
    until: datetime | None = None
    cursor: int | None = Field(None, ge=1)
    limit: int = Field(50, ge=1, le=200)


class AuditEntry(BaseModel):
    audit_id: int
    at: datetime
    org_id: uuid.UUID | None
    workspace_id: uuid.UUID | None
    actor_kind: str
    actor_id: str | None
    action: str
    outcome: str
    target: str | None
    address: str | None
    request_id: str | None
    details: dict[str, Any]


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next_cursor: int | None = Field(description="pass as `cursor` for the next (older) page; null at the end")


AUDIT_PARAMETERS = [
    {"name": name, "in": "query", "schema": schema, "description": text}
    for name, schema, text in [
        ("action", {"type": "string"}, "an action (signin.failure) or a family (signin.*)"),
        ("outcome", {"type": "string", "enum": ["success", "failure", "refused"]}, ""),
        ("actor_id", {"type": "string"}, "the key or account id that acted"),
        ("workspace_id", {"type": "string", "format": "uuid"}, ""),
        ("since", {"type": "string", "format": "date-time"}, "inclusive"),
        ("until", {"type": "string", "format": "date-time"}, "exclusive"),
        ("cursor", {"type": "integer", "minimum": 1}, "next_cursor of the previous page"),
        ("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}, ""),
    ]
]


async def list_audit(services: Services, request: Request) -> dict[str, Any]:
    principal = await services.authorize(request)
    try:
        query = AuditQuery.model_validate(dict(request.query_params))
    except ValidationError as exc:
        raise InvalidInput("invalid audit query", details_from_validation_error(exc, "query")) from None
    flt = audit_repo.AuditFilter(action=query.action, outcome=query.outcome, actor_id=query.actor_id,
                                 since=query.since, until=query.until, before_id=query.cursor,
                                 workspace_id=query.workspace_id)
    if not principal.allows("orgs.manage"):  # not an owner: its workspace and itself only
        flt.visible_workspace, flt.visible_actor = principal.workspace_id, actor_of(principal).actor_id
    pool = await services.db()
    rows = await with_retries(lambda: audit_repo.query(pool, principal.org_id, flt, query.limit + 1),
                              attempts=2, what="audit read")
    more = len(rows) > query.limit
    items = rows[: query.limit]
    for item in items:
        for name in ("org_id", "workspace_id"):
            item[name] = str(item[name]) if item[name] else None
        item["at"] = item["at"].isoformat()
    return {"items": items, "next_cursor": items[-1]["audit_id"] if more else None}
