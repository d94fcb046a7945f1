"""Consent (issue 18.1): the workspace's notice, and the caller's recorder agreeing to it or
withdrawing. Recorder keys (and admins) hold the routes' permission (`sessions.create`: who may
record may agree to be recorded); a key without a recorder reads the notice and its (empty)
consent and gets `409 no_recorder` for the writes. Admins (`workspaces.manage`) set their own
workspace's notice; another workspace's id is 404. Changes are audited."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from actors.consent import records
from actors.consent.notice import ConsentAnswer, NoticeBody
from actors.errors import NotFound
from serve_app.http_io import read_json
from serve_app.review_api import _body
from serve_app.services import Services

__all__ = ["ConsentAnswer", "ConsentRecord", "ConsentView", "NoticeBody", "NoticeView", "agree", "get_consent",
           "get_notice", "put_notice", "withdraw"]

MAX_BODY_BYTES = 64 * 1024  # a notice's text is at most 20 000 characters


class NoticeView(BaseModel):
    workspace_id: str
    version: str
    text: str
    required: bool = Field(description="true: recorder keys record nothing before their recorder agreed")
    recorded: list[str]
    masked: list[str]
    retention_days: int | None


class ConsentRecord(BaseModel):
    recorder_id: str
    version: str
    agreed_at: str
    withdrawn_at: str | None


class CurrentConsent(BaseModel):
    version: str
    agreed_at: str


class HistoryEntry(BaseModel):
    version: str
    agreed_at: str
    withdrawn_at: str | None


class ConsentView(BaseModel):
    recorder_id: str | None = Field(description="null: this credential names no recorder and needs no consent")
    current: CurrentConsent | None = Field(description="the open record of the current notice version, if any")
    history: list[HistoryEntry] = Field(description="every record, newest first")
    notice_version: str | None = Field(description="the workspace's current notice version")
    required: bool = Field(description="true: this caller records nothing before agreeing to that version")


async def get_notice(services: Services, request: Request) -> dict[str, Any]:
    principal = await services.authorize(request)
    return await records.read_notice(await services.db(), principal)


async def get_consent(services: Services, request: Request) -> dict[str, Any]:
    principal = await services.authorize(request)
    return await records.overview(await services.db(), principal)


async def agree(services: Services, request: Request) -> JSONResponse:
    principal = await services.authorize(request)
    answer: ConsentAnswer = _body(await read_json(request, MAX_BODY_BYTES), ConsentAnswer, "consent")
    record, state = await records.agree(await services.db(), principal, answer, services.guard.address())
    if principal.recorder_id is not None:  # this replica lets the recorder record at once
        services.consent.remember(principal.workspace_id, principal.recorder_id, state)
    return JSONResponse(record, status_code=201)


async def withdraw(services: Services, request: Request) -> dict[str, Any]:
    principal = await services.authorize(request)
    try:
        return await records.withdraw(await services.db(), principal, services.guard.address())
    finally:
        # Refused from now on in this replica (others within auth.cache_ttl_s), even when the
        # answer is a 404 for a recorder that never agreed.
        if principal.recorder_id is not None:
            services.consent.forget(principal.workspace_id, principal.recorder_id)


async def put_notice(services: Services, request: Request, raw_id: str) -> dict[str, Any]:
    principal = await services.authorize(request)
    try:
        workspace_id = uuid.UUID(raw_id)
    except ValueError:
        raise NotFound(f"no workspace {raw_id[:64]!r}") from None
    if workspace_id != principal.workspace_id:  # before the body: another workspace is not the caller's
        raise NotFound(f"no workspace {workspace_id}")
    body: NoticeBody = _body(await read_json(request, MAX_BODY_BYTES), NoticeBody, "notice")
    notice = await records.set_notice(await services.db(), principal, workspace_id, body, services.guard.address())
    services.consent.forget_workspace(workspace_id)
    return notice
