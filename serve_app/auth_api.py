"""People sign in: `/v1/auth/*` (sign-in, refresh, sign-out, password change, who am I) and
invitations into a workspace (`/v1/invitations`).

The access token (a JWT, 15-60 min) is answered in the body: a page keeps it in memory and sends
it as `Authorization: Bearer`. The refresh token is never in a body: it is an `HttpOnly; Secure;
SameSite=Strict` cookie whose Path is the refresh route, so the browser sends it there only
(refresh and sign-out) and no script can read it. API keys (`tm_…`) keep working beside this.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from actors.accounts.audit import actor_of
from actors.accounts.people import People
from actors.accounts.signin import SignedIn
from actors.accounts.tokens import AccessClaims
from actors.auth import DEFAULT_WORKSPACE_ID, KEY_TAG, Principal
from actors.storage import accounts_repo
from actors.errors import ConfigError, InvalidInput, Unauthenticated, details_from_validation_error
from serve_app.http_io import bearer_key, read_json
from serve_app.services import Services

__all__ = ["AccountView", "InvitationAccept", "InvitationCreate", "InvitationCreated", "PasswordChange",
           "REFRESH_COOKIE", "REFRESH_PATH", "SignInRequest", "TokenResponse", "accept_invitation",
           "change_password", "create_invitation", "me", "refresh", "sign_in", "sign_out"]

REFRESH_PATH = "/v1/auth/refresh"
REFRESH_COOKIE = "tm_refresh"
_MAX_BODY = 16 * 1024


class SignInRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(min_length=1, max_length=254)
    password: str = Field(min_length=1, max_length=256)
    workspace_id: uuid.UUID | None = Field(None, description="default: the account's first workspace")


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int = Field(description="seconds")
    account_id: uuid.UUID
    org_id: uuid.UUID
    workspace_id: uuid.UUID
    role: str


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    current_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=1, max_length=256)


class InvitationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(min_length=3, max_length=254)
    role: str = Field(description="owner, admin, reviewer, analyst or recorder")


class InvitationCreated(BaseModel):
    invitation_id: uuid.UUID
    email: str
    org_id: uuid.UUID
    workspace_id: uuid.UUID
    role: str
    expires_at: str
    token: str = Field(description="shown once: give it to the person invited (inv_…)")


class InvitationAccept(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=256, description="a new account's password, or the existing one's")
    display_name: str = Field("", max_length=100)


class AccountView(BaseModel):
    account_id: uuid.UUID
    email: str
    display_name: str
    org_id: uuid.UUID
    workspace_id: uuid.UUID
    role: str


def _people(services: Services) -> People:
    if services.people is None:  # Services.create always builds it; a hand-made Services may not
        raise ConfigError("this replica has no account settings")
    return services.people


async def _body(request: Request, model: type[BaseModel]) -> Any:
    raw = await read_json(request, _MAX_BODY)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise InvalidInput(f"invalid {model.__name__} body", details_from_validation_error(exc, "body")) from None


def _address(services: Services) -> str | None:
    address = services.guard.address()
    services.guard.charge(("http_requests_per_address", address, 1))
    return address


def _signed_in(services: Services, signed: SignedIn) -> JSONResponse:
    response = JSONResponse(signed.body())
    response.headers["Cache-Control"] = "no-store"
    response.set_cookie(REFRESH_COOKIE, signed.refresh_token, max_age=services.settings.accounts.refresh_ttl_s,
                        path=REFRESH_PATH, secure=services.settings.accounts.cookie_secure, httponly=True,
                        samesite="strict")
    return response


def _cleared(services: Services, response: Response) -> Response:
    response.delete_cookie(REFRESH_COOKIE, path=REFRESH_PATH, secure=services.settings.accounts.cookie_secure,
                           httponly=True, samesite="strict")
    return response


async def _account(services: Services, request: Request) -> tuple[AccessClaims, Principal]:
    """The signed-in caller (an access token, not an API key), its account state checked."""
    token = bearer_key(request)
    if not token or token.startswith(KEY_TAG):
        raise Unauthenticated("this route needs a signed-in account's access token, not an API key")
    principal = await _people(services).tokens.principal(await services.db(), token)
    return _people(services).tokens.claims(token), principal


async def sign_in(services: Services, request: Request) -> JSONResponse:
    address = _address(services)
    body: SignInRequest = await _body(request, SignInRequest)
    signed = await _people(services).accounts.sign_in(await services.db(), body.email, body.password, address=address,
                                             workspace_id=body.workspace_id)
    return _signed_in(services, signed)


async def refresh(services: Services, request: Request) -> JSONResponse:
    address = _address(services)
    signed = await _people(services).accounts.refresh(await services.db(), request.cookies.get(REFRESH_COOKIE),
                                             address=address)
    return _signed_in(services, signed)


async def sign_out(services: Services, request: Request) -> Response:
    address = _address(services)
    await _people(services).accounts.sign_out(await services.db(), request.cookies.get(REFRESH_COOKIE), address=address)
    return _cleared(services, Response(status_code=204))


async def change_password(services: Services, request: Request) -> Response:
    address = _address(services)
    claims, _ = await _account(services, request)
    body: PasswordChange = await _body(request, PasswordChange)
    await _people(services).accounts.change_password(await services.db(), claims, body.current_password,
                                            body.new_password, address=address)
    _people(services).tokens.forget(claims.account_id)
    return _cleared(services, Response(status_code=204))


async def me(services: Services, request: Request) -> dict[str, Any]:
    claims, principal = await _account(services, request)
    account = await accounts_repo.account_by_id(await services.db(), claims.account_id)
    return {"account_id": str(claims.account_id), "email": account["email"] if account else "",
            "display_name": account["display_name"] if account else "", "org_id": str(claims.org_id),
            "workspace_id": str(claims.workspace_id), "role": principal.role}


async def create_invitation(services: Services, request: Request) -> JSONResponse:
    principal = await services.authorize(request)
    body: InvitationCreate = await _body(request, InvitationCreate)
    actor = actor_of(principal)
    workspace_id = actor.workspace_id or DEFAULT_WORKSPACE_ID  # invitations into the caller's workspace
    created = await _people(services).accounts.invite(await services.db(), body.email, body.role, org_id=principal.org_id,
                                             workspace_id=workspace_id, actor=actor, address=services.guard.address())
    created["expires_at"] = created["expires_at"].isoformat()
    created.pop("created_at", None)
    return JSONResponse(created, status_code=201, headers={"Cache-Control": "no-store"})


async def accept_invitation(services: Services, request: Request) -> JSONResponse:
    address = _address(services)
    body: InvitationAccept = await _body(request, InvitationAccept)
    signed = await _people(services).accounts.accept(await services.db(), body.token, body.password, address=address,
                                            display_name=body.display_name)
    return _signed_in(services, signed)
