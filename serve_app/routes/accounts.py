"""People: sign-in, tokens, passwords, invitations and the audit trail."""

# No `from __future__ import annotations`: FastAPI must see real types on the route methods
# that Serve rewrites into class-based views.
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from serve_app import audit_api, auth_api
from serve_app.openapi import body_of, errors_of
from serve_app.routes.api import RouteBase, api


class AccountRoutes(RouteBase):
    @api.post("/v1/auth/signin", response_model=auth_api.TokenResponse, tags=["accounts"],
              openapi_extra={**body_of(auth_api.SignInRequest), "security": []},
              responses=errors_of(400, 401, 408, 413, 415, 422, 429, 503),
              summary="Sign in with email and password: an access token, and the refresh cookie")
    async def sign_in(self, request: Request) -> JSONResponse:
        return await auth_api.sign_in(self.services, request)

    @api.post(auth_api.REFRESH_PATH, response_model=auth_api.TokenResponse, tags=["accounts"],
              openapi_extra={"security": []}, responses=errors_of(401, 429, 503),
              summary="A new access token for the refresh cookie, which rotates (a replayed one revokes the sign-in)")
    async def refresh(self, request: Request) -> JSONResponse:
        return await auth_api.refresh(self.services, request)

    @api.delete(auth_api.REFRESH_PATH, status_code=204, tags=["accounts"], openapi_extra={"security": []},
                responses=errors_of(429, 503), summary="Sign out: revoke the refresh cookie's sign-in")
    async def sign_out(self, request: Request) -> Response:
        return await auth_api.sign_out(self.services, request)

    @api.post("/v1/auth/password", status_code=204, tags=["accounts"], openapi_extra=body_of(auth_api.PasswordChange),
              responses=errors_of(400, 401, 408, 413, 415, 422, 503),
              summary="Change your password: every sign-in and access token of the account is revoked")
    async def change_password(self, request: Request) -> Response:
        return await auth_api.change_password(self.services, request)

    @api.get("/v1/auth/me", response_model=auth_api.AccountView, tags=["accounts"], responses=errors_of(401, 503),
             summary="The signed-in account: email, workspace, role")
    async def me(self, request: Request) -> dict[str, Any]:
        return await auth_api.me(self.services, request)

    @api.post("/v1/invitations", status_code=201, response_model=auth_api.InvitationCreated, tags=["accounts"],
              openapi_extra=body_of(auth_api.InvitationCreate),
              responses=errors_of(400, 401, 403, 408, 413, 415, 422, 503),
              summary="Invite a person into your workspace with a role (the token is shown once)")
    async def create_invitation(self, request: Request) -> JSONResponse:
        return await auth_api.create_invitation(self.services, request)

    @api.post("/v1/invitations/accept", response_model=auth_api.TokenResponse, tags=["accounts"],
              openapi_extra={**body_of(auth_api.InvitationAccept), "security": []},
              responses=errors_of(400, 401, 404, 408, 409, 413, 415, 422, 429, 503),
              summary="Accept an invitation with a password (a new account, or your existing one): signed in")
    async def accept_invitation(self, request: Request) -> JSONResponse:
        return await auth_api.accept_invitation(self.services, request)

    @api.get("/v1/audit", response_model=audit_api.AuditPage, tags=["accounts"], responses=errors_of(401, 403, 422, 503),
             openapi_extra={"parameters": audit_api.AUDIT_PARAMETERS},
             summary="The organisation's audit trail, newest first (owners and admins)")
    async def list_audit(self, request: Request) -> dict[str, Any]:
        return await audit_api.list_audit(self.services, request)
