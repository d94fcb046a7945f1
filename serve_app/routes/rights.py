"""The recorded person's rights: deletion (consent, export and retention join here)."""

# No `from __future__ import annotations`: FastAPI must see real types on the route methods
# that Serve rewrites into class-based views.
from fastapi import Request
from fastapi.responses import JSONResponse

from serve_app import deletion_api
from serve_app.deletion_api import RecorderDeleted, SessionDeleted
from serve_app.openapi import errors_of
from serve_app.routes.api import RouteBase, SESSION_PATH, api


class RightsRoutes(RouteBase):
    @api.delete(
        SESSION_PATH, status_code=202, response_model=SessionDeleted, tags=["deletion"],
        responses=errors_of(401, 403, 404, 503),
        summary="Delete a session: hidden from every read at once, purged after the grace period (data.delete)",
    )
    async def delete_session(self, session_id: str, request: Request) -> JSONResponse:
        return await deletion_api.delete_session(self.services, request, session_id)

    @api.delete(
        "/v1/recorders/{recorder_id}", status_code=202, response_model=RecorderDeleted, tags=["deletion"],
        responses=errors_of(401, 403, 404, 503),
        summary="Delete a recorder and every session it recorded; its keys are revoked (data.delete)",
    )
    async def delete_recorder(self, recorder_id: str, request: Request) -> JSONResponse:
        return await deletion_api.delete_recorder(self.services, request, recorder_id)
