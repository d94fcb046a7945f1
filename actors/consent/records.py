"""What the consent routes do: read a recorder's consent, agree, withdraw, read and set a
workspace's notice. Each change is written with its audit entry in one transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from actors.accounts.audit import actor_of, audit
from actors.auth import Principal
from actors.consent.consent_gate import ConsentState
from actors.consent.notice import ConsentAnswer, NoticeBody, notice_view, record_view
from actors.errors import Conflict, NotFound, NoticeChanged
from actors.storage import consent_repo
from actors.storage.postgres import with_retries

__all__ = ["agree", "current_of", "load_state", "overview", "read_notice", "set_notice", "withdraw"]


def current_of(history: Sequence[Any], version: str) -> Any | None:
    """The record that lets the recorder record under notice `version`: the newest open one
    naming it (history newest first), else None."""
    return next((r for r in history if r["withdrawn_at"] is None and r["notice_version"] == version), None)


async def load_state(pool: Any, workspace_id: uuid.UUID, recorder_id: uuid.UUID) -> ConsentState:
    """The gate's loader (actors.consent.consent_gate.Loader): a database down is 503, as for a key."""
    row = await with_retries(lambda: consent_repo.consent_state(pool, workspace_id, recorder_id), attempts=2,
                             what="consent check")
    if row is None:  # no notice: the workspace predates nothing that could make one (0019 gives all)
        raise NotFound(f"workspace {workspace_id} has no consent notice")
    return ConsentState(version=row["version"], required=row["required"], agreed=row["agreed"])


def _recorder_of(principal: Principal) -> uuid.UUID:
    if principal.recorder_id is None:
        raise Conflict("this credential names no recorder: consent is given by the person behind a recorder key",
                       [{"field": None, "error": "no recorder"}], code="no_recorder")
    return principal.recorder_id


async def read_notice(pool: asyncpg.Pool, principal: Principal) -> dict[str, Any]:
    row = await consent_repo.current_notice(pool, principal.org_id, principal.workspace_id)
    if row is None:
        raise NotFound(f"workspace {principal.workspace_id} has no consent notice")
    return notice_view(row)


async def overview(pool: asyncpg.Pool, principal: Principal) -> dict[str, Any]:
    """The caller's recorder, its current consent and its history (newest first). Fields beyond
    the contract: `notice_version` (the current one) and `required` (whether this caller must
    agree before it records)."""
    notice = await consent_repo.current_notice(pool, principal.org_id, principal.workspace_id)
    version = None if notice is None else notice["version"]
    if principal.recorder_id is None:
        return {"recorder_id": None, "current": None, "history": [], "notice_version": version, "required": False}
    rows = await consent_repo.history(pool, principal.recorder_id)
    current = current_of(rows, version) if version is not None else None
    return {
        "recorder_id": str(principal.recorder_id),
        "current": None if current is None else {"version": current["notice_version"],
                                                 "agreed_at": current["agreed_at"].isoformat()},
        "history": [{k: v for k, v in record_view(r).items() if k != "recorder_id"} for r in rows],
        "notice_version": version,
        "required": bool(notice is not None and notice["required"] and current is None),
    }


async def agree(pool: asyncpg.Pool, principal: Principal, answer: ConsentAnswer,
                address: str | None) -> tuple[dict[str, Any], ConsentState]:
    """Record agreement to the current notice; NoticeChanged for any other version."""
    recorder = _recorder_of(principal)
    async with pool.acquire() as conn, conn.transaction():
        notice = await consent_repo.current_notice(conn, principal.org_id, principal.workspace_id)
        if notice is None or notice["version"] != answer.version:
            current = None if notice is None else notice["version"]
            raise NoticeChanged(f"the notice shown ({answer.version!r}) is not the workspace's current one"
                                f" ({current!r}): show the current notice and ask again",
                                [{"field": "version", "error": "not the current notice", "version": current}])
        row = await consent_repo.agree(conn, principal.org_id, principal.workspace_id, recorder, answer.version)
        await audit(conn, "consent.agree", actor_of(principal), target=str(recorder), address=address,
                    details={"version": answer.version, "consent_id": str(row["consent_id"])})
    return record_view(row), ConsentState(answer.version, notice["required"], agreed=True)


async def withdraw(pool: asyncpg.Pool, principal: Principal, address: str | None) -> dict[str, Any]:
    """Withdraw every open record; a repeat answers the newest record as it stands. NotFound for
    a recorder that never agreed."""
    recorder = _recorder_of(principal)
    async with pool.acquire() as conn, conn.transaction():
        stamped = await consent_repo.withdraw(conn, recorder)
        if stamped:
            await audit(conn, "consent.withdraw", actor_of(principal), target=str(recorder), address=address,
                        details={"versions": sorted({r["notice_version"] for r in stamped}), "records": len(stamped)})
            return record_view(stamped[0])
    rows = await consent_repo.history(pool, recorder, limit=1)
    if not rows:
        raise NotFound(f"recorder {recorder} has no consent to withdraw")
    return record_view(rows[0])


async def set_notice(pool: asyncpg.Pool, principal: Principal, workspace_id: uuid.UUID, body: NoticeBody,
                     address: str | None) -> dict[str, Any]:
    """Make `body` the workspace's current notice. A version it had with other content is a
    conflict (a version names one content); with the same content it becomes current again."""
    if workspace_id != principal.workspace_id:  # another workspace's notice is not the caller's
        raise NotFound(f"no workspace {workspace_id}")
    notice = body.model_dump() | {"org_id": principal.org_id, "workspace_id": workspace_id}
    async with pool.acquire() as conn, conn.transaction():
        if not await consent_repo.lock_workspace(conn, principal.org_id, workspace_id):
            raise NotFound(f"no workspace {workspace_id}")
        existing = await consent_repo.notice_version(conn, workspace_id, body.version)
        if existing is not None and any(_differs(existing[k], notice[k]) for k in
                                        ("text", "required", "recorded", "masked", "retention_days")):
            raise Conflict(f"notice version {body.version!r} was used with other content; give the new content a"
                           " new version", [{"field": "version", "error": "used with other content"}],
                           code="notice_version_taken")
        await consent_repo.set_current(conn, notice, getattr(principal, "account_id", None) or principal.key_id,
                                       exists=existing is not None)
        await audit(conn, "notice.update", actor_of(principal), target=str(workspace_id), address=address,
                    details={"version": body.version, "required": body.required, "new": existing is None})
        row = await consent_repo.current_notice(conn, principal.org_id, workspace_id)
    return notice_view(row)


def _differs(stored: Any, given: Any) -> bool:
    return (list(stored) if isinstance(stored, list | tuple) else stored) != given
