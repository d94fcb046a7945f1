"""Consent (issue 18.1): the workspace's notice, the caller's recorder agreeing or withdrawing,
and admins setting the notice (serve_app/consent_api.py)."""

# No `from __future__ import annotations`: FastAPI must see real types on the route methods
# that Serve rewrites into class-based views.
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from serve_app import consent_api
from serve_app.consent_api import ConsentAnswer, ConsentRecord, ConsentView, NoticeBody, NoticeView
from serve_app.openapi import errors_of
from serve_app.review_api import body_inline
from serve_app.routes.api import RouteBase, api


class ConsentRoutes(RouteBase):
    @api.get("/v1/consent/notice", response_model=NoticeView, tags=["consent"], responses=errors_of(401, 403, 503),
             summary="The workspace's current notice: what is recorded, masked, kept and for how long")
    async def get_consent_notice(self, request: Request) -> dict[str, Any]:
        return await consent_api.get_notice(self.services, request)

    @api.get("/v1/consent", response_model=ConsentView, tags=["consent"], responses=errors_of(401, 403, 503),
             summary="The caller's recorder: its current consent and every record, newest first")
    async def get_consent(self, request: Request) -> dict[str, Any]:
        return await consent_api.get_consent(self.services, request)

    @api.post(
        "/v1/consent", status_code=201, response_model=ConsentRecord, tags=["consent"],
        openapi_extra=body_inline(ConsentAnswer), responses=errors_of(400, 401, 403, 409, 413, 415, 422, 503),
        summary="Agree to the notice version shown (409 notice_changed if it is not the current one; audited)",
    )
    async def agree_consent(self, request: Request) -> JSONResponse:
        return await consent_api.agree(self.services, request)

    @api.delete("/v1/consent", response_model=ConsentRecord, tags=["consent"],
                responses=errors_of(401, 403, 404, 409, 503),
                summary="Withdraw consent: the recorder's keys record nothing more (idempotent; audited)")
    async def withdraw_consent(self, request: Request) -> dict[str, Any]:
        return await consent_api.withdraw(self.services, request)

    @api.put(
        "/v1/workspaces/{workspace_id}/notice", response_model=NoticeView, tags=["consent"],
        openapi_extra=body_inline(NoticeBody), responses=errors_of(400, 401, 403, 404, 409, 413, 415, 422, 503),
        summary="Set the workspace's notice (admins; a new version asks every recorder again; audited)",
    )
    async def put_workspace_notice(self, workspace_id: str, request: Request) -> dict[str, Any]:
        return await consent_api.put_notice(self.services, request, workspace_id)
