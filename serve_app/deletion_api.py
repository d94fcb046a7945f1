"""Deleting a session or a recorder's data (issue 18.3): `DELETE /v1/sessions/{id}` and
`DELETE /v1/recorders/{id}` (permission `data.delete`: admins and owners). What is deleted is
hidden from every read at once and purged after `deletion.grace_period_s` (jobs/purge.py).
Another workspace's id, an unknown one and one deleted already are all 404."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from actors.accounts.audit import actor_of, audit
from actors.errors import NotFound
from actors.storage import deletion_repo
from serve_app.http_io import session_uuid
from serve_app.services import Services

__all__ = ["RecorderDeleted", "SessionDeleted", "delete_recorder", "delete_session"]


class SessionDeleted(BaseModel):
    session_id: str
    deleted_at: str
    purge_after: str = Field(description="when the purge may remove it everywhere (the grace period)")


class RecorderDeleted(BaseModel):
    recorder_id: str
    deleted_at: str
    purge_after: str
    sessions: int = Field(description="sessions of the recorder hidden by this delete")
    keys_revoked: int = Field(description="keys bound to the recorder, revoked")


def _recorder_uuid(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound(f"no recorder {raw[:64]!r}") from None


async def delete_session(services: Services, request: Request, raw_id: str) -> JSONResponse:
    principal = await services.authorize(request)
    session_id = session_uuid(raw_id)
    grace = services.settings.deletion.grace_period_s
    pool = await services.db()
    async with pool.acquire() as conn, conn.transaction():
        row = await deletion_repo.delete_session(conn, principal.org_id, principal.workspace_id, session_id, grace)
        if row is None:
            raise NotFound(f"no session {session_id}")
        await audit(conn, "session.delete", actor_of(principal), target=str(session_id),
                    address=services.guard.address(), details={"grace_period_s": grace})
    services.owners.forget(session_id)
    return JSONResponse({"session_id": str(session_id), "deleted_at": row["deleted_at"].isoformat(),
                         "purge_after": row["purge_after"].isoformat()}, status_code=202)


async def delete_recorder(services: Services, request: Request, raw_id: str) -> JSONResponse:
    principal = await services.authorize(request)
    recorder_id = _recorder_uuid(raw_id)
    grace = services.settings.deletion.grace_period_s
    pool = await services.db()
    async with pool.acquire() as conn, conn.transaction():
        done: dict[str, Any] | None = await deletion_repo.delete_recorder(
            conn, principal.org_id, principal.workspace_id, recorder_id, grace)
        if done is None:
            raise NotFound(f"no recorder {recorder_id}")
        await audit(conn, "recorder.delete", actor_of(principal), target=str(recorder_id),
                    address=services.guard.address(),
                    details={"sessions": len(done["sessions"]), "keys_revoked": done["keys_revoked"],
                             "grace_period_s": grace})
    for session_id in done["sessions"]:
        services.owners.forget(session_id)
    return JSONResponse({"recorder_id": str(recorder_id), "deleted_at": done["deleted_at"].isoformat(),
                         "purge_after": done["purge_after"].isoformat(), "sessions": len(done["sessions"]),
                         "keys_revoked": done["keys_revoked"]}, status_code=202)
