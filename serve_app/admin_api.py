"""Administration: organisations (owners), workspaces (admins), and keys with a role for a
workspace, optionally bound to a recorder (the person or extension install that uses it).

Nobody hands out more than it holds: a key's role must be one the caller's role covers
(actors/permissions.can_grant), and only an owner makes keys for another workspace of its
organisation. A new organisation comes with an owner key for its default workspace, shown once.
Each change writes its audit entry in the same transaction (names, ids and roles; never a key).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from actors import auth
from actors.accounts.audit import actor_of, audit
from actors.errors import Forbidden, InvalidInput, details_from_validation_error
from actors.permissions import Role, can_grant
from actors.storage import orgs_repo
from serve_app.http_io import read_json
from serve_app.services import Services

__all__ = ["KeyCreate", "NameBody", "create_key", "create_org", "create_workspace", "list_keys", "list_orgs",
           "list_workspaces"]

_BODY_LIMIT = 16_384


class NameBody(BaseModel):
    """A new organisation or workspace."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=orgs_repo.MAX_NAME_CHARS)


class KeyCreate(BaseModel):
    """A new API key for a workspace of the caller's organisation."""

    model_config = ConfigDict(extra="forbid")
    role: Role
    name: str = Field("", max_length=100)
    workspace_id: uuid.UUID | None = Field(None, description="default: the caller's workspace (others: owners only)")
    recorder: str | None = Field(None, min_length=1, max_length=orgs_repo.MAX_NAME_CHARS,
                                 description="the person or extension install using the key (made if new)")
    expires_in_s: int | None = Field(None, ge=60, le=10 * 365 * 86400)


async def _body(request: Request, model: type[BaseModel]) -> Any:
    raw = await read_json(request, _BODY_LIMIT)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise InvalidInput("invalid request", details_from_validation_error(exc, "body")) from None


def _workspace_view(row: Any) -> dict[str, Any]:
    return {"workspace_id": str(row["workspace_id"]), "org_id": str(row["org_id"]), "name": row["name"],
            "is_default": row["is_default"], "created_at": row["created_at"].isoformat()}


async def list_orgs(services: Services, request: Request) -> dict[str, Any]:
    """The caller's organisation (the operator's CLI lists them all)."""
    principal = await services.authorize(request)
    rows = await orgs_repo.list_orgs(await services.db(), principal.org_id)
    return {"items": [{"org_id": str(r["org_id"]), "name": r["name"], "workspaces": r["workspaces"],
                       "created_at": r["created_at"].isoformat()} for r in rows]}


async def create_org(services: Services, request: Request) -> JSONResponse:
    principal = await services.authorize(request)
    body: NameBody = await _body(request, NameBody)
    pool = await services.db()
    actor, address = actor_of(principal), services.guard.address()
    async with pool.acquire() as conn, conn.transaction():
        org_id, workspace_id = await orgs_repo.create_org(conn, body.name)
        key_id, key = await auth.create_key(conn, role="owner", org_id=org_id, workspace_id=workspace_id,
                                            name="owner", pepper=services.keys.pepper)
        # In the creator's trail, and the owner key in the new organisation's.
        await audit(conn, "org.create", actor, target=str(org_id), address=address,
                    details={"name": body.name, "workspace_id": str(workspace_id)})
        await audit(conn, "key.create", actor, target=str(key_id), address=address, org_id=org_id,
                    workspace_id=workspace_id, details={"role": "owner", "name": "owner"})
    return JSONResponse({"org_id": str(org_id), "name": body.name, "workspace_id": str(workspace_id),
                         "owner_key": {"key_id": str(key_id), "key": key}}, status_code=201)


async def list_workspaces(services: Services, request: Request) -> dict[str, Any]:
    principal = await services.authorize(request)
    rows = await orgs_repo.list_workspaces(await services.db(), principal.org_id)
    return {"items": [_workspace_view(r) for r in rows]}


async def create_workspace(services: Services, request: Request) -> JSONResponse:
    principal = await services.authorize(request)
    body: NameBody = await _body(request, NameBody)
    pool = await services.db()
    async with pool.acquire() as conn, conn.transaction():
        row = await orgs_repo.create_workspace(conn, principal.org_id, body.name)
        await audit(conn, "workspace.create", actor_of(principal), target=str(row["workspace_id"]),
                    address=services.guard.address(), details={"name": body.name})
    return JSONResponse(_workspace_view(row), status_code=201)


async def list_keys(services: Services, request: Request) -> dict[str, Any]:
    """The keys of the caller's workspace: ids, roles and states, never secrets."""
    principal = await services.authorize(request)
    keys = await auth.list_keys(await services.db(), workspace_id=principal.workspace_id)
    now = datetime.now(timezone.utc)
    return {"items": [{"key_id": str(k.key_id), "lookup_id": k.display_id, "name": k.name, "role": k.role,
                       "recorder_id": None if k.recorder_id is None else str(k.recorder_id),
                       "state": k.state(now),
                       "expires_at": k.expires_at.isoformat() if k.expires_at else None} for k in keys]}


async def create_key(services: Services, request: Request) -> JSONResponse:
    principal = await services.authorize(request)
    body: KeyCreate = await _body(request, KeyCreate)
    if not can_grant(principal.role, body.role):
        raise Forbidden(f"a '{principal.role}' cannot make a '{body.role}' key", [{"field": "body.role"}])
    pool = await services.db()
    async with pool.acquire() as conn, conn.transaction():
        workspace_id = principal.workspace_id
        if body.workspace_id not in (None, principal.workspace_id):
            if principal.role != "owner":
                raise Forbidden("only an owner makes keys for another workspace", [{"field": "body.workspace_id"}])
            workspace_id = await orgs_repo.workspace_of_org(conn, principal.org_id, body.workspace_id)
        recorder_id = None
        if body.recorder is not None:
            recorder_id = await orgs_repo.recorder_named(conn, principal.org_id, workspace_id, body.recorder)
        expires = None if body.expires_in_s is None else timedelta(seconds=body.expires_in_s)
        key_id, key = await auth.create_key(conn, role=body.role, org_id=principal.org_id, workspace_id=workspace_id,
                                            recorder_id=recorder_id, name=body.name, expires_in=expires,
                                            pepper=services.keys.pepper)
        # The role given with the key is the audited grant (keys have no other way to get one).
        await audit(conn, "key.create", actor_of(principal), target=str(key_id), address=services.guard.address(),
                    workspace_id=workspace_id, details={
                        "role": body.role, "name": body.name, "expires_in_s": body.expires_in_s,
                        "recorder_id": None if recorder_id is None else str(recorder_id)})
    return JSONResponse({"key_id": str(key_id), "key": key, "role": body.role, "workspace_id": str(workspace_id),
                         "recorder_id": None if recorder_id is None else str(recorder_id)}, status_code=201)
