"""Organisations, workspaces and keys."""

# No `from __future__ import annotations`: FastAPI must see real types on the route methods
# that Serve rewrites into class-based views.
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from serve_app import admin_api
from serve_app.admin_api import KeyCreate, NameBody
from serve_app.openapi import body_of, errors_of
from serve_app.routes.api import RouteBase, api


class AdminRoutes(RouteBase):
    @api.get("/v1/orgs", tags=["admin"], responses=errors_of(401, 403, 503),
             summary="The caller's organisation (owner); the operator's CLI lists them all")
    async def list_orgs(self, request: Request) -> dict[str, Any]:
        return await admin_api.list_orgs(self.services, request)

    @api.post("/v1/orgs", status_code=201, tags=["admin"], openapi_extra=body_of(NameBody),
              responses=errors_of(400, 401, 403, 409, 413, 415, 422, 503),
              summary="Create an organisation with its default workspace and an owner key, shown once (owner)")
    async def create_org(self, request: Request) -> JSONResponse:
        return await admin_api.create_org(self.services, request)

    @api.get("/v1/workspaces", tags=["admin"], responses=errors_of(401, 403, 503),
             summary="The organisation's workspaces (admin)")
    async def list_workspaces(self, request: Request) -> dict[str, Any]:
        return await admin_api.list_workspaces(self.services, request)

    @api.post("/v1/workspaces", status_code=201, tags=["admin"], openapi_extra=body_of(NameBody),
              responses=errors_of(400, 401, 403, 409, 413, 415, 422, 503),
              summary="Create a workspace in the caller's organisation (admin)")
    async def create_workspace(self, request: Request) -> JSONResponse:
        return await admin_api.create_workspace(self.services, request)

    @api.get("/v1/keys", tags=["admin"], responses=errors_of(401, 403, 503),
             summary="The workspace's API keys: ids, roles, states, never secrets (admin)")
    async def list_keys(self, request: Request) -> dict[str, Any]:
        return await admin_api.list_keys(self.services, request)

    @api.post("/v1/keys", status_code=201, tags=["admin"], openapi_extra=body_of(KeyCreate),
              responses=errors_of(400, 401, 403, 404, 413, 415, 422, 503),
              summary="Create a key with a role (no more than the caller's) for a workspace and recorder; shown once")
    async def create_key(self, request: Request) -> JSONResponse:
        return await admin_api.create_key(self.services, request)
