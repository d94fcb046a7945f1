"""Review: flags, the queue and the moderation thresholds."""

# No `from __future__ import annotations`: FastAPI must see real types on the route methods
# that Serve rewrites into class-based views.
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from serve_app import moderation_api, review_api, search_api
from serve_app.moderation_api import Thresholds, ThresholdsView
from serve_app.openapi import errors_of
from serve_app.review_api import FlagCreate, FlagList, FlagUpdate, FlagView, QueueList
from serve_app.routes.api import RouteBase, SESSION_PATH, api


class ReviewRoutes(RouteBase):
    @api.post(
        SESSION_PATH + "/flags", status_code=201, response_model=FlagView, tags=["review"],
        openapi_extra=review_api.body_inline(FlagCreate), responses=errors_of(400, 401, 403, 404, 413, 415, 422, 503),
        summary="Flag a session (seq null) or one step with a reason (review scope)",
    )
    async def create_flag(self, session_id: str, request: Request) -> JSONResponse:
        return await review_api.create_flag(self.services, request, session_id)

    @api.get(SESSION_PATH + "/flags", response_model=FlagList, tags=["review"], responses=errors_of(401, 403, 404, 503),
             summary="A session's flags, oldest first (read scope)")
    async def list_flags(self, session_id: str, request: Request) -> dict[str, Any]:
        return await review_api.list_flags(self.services, request, session_id)

    @api.patch(
        "/v1/flags/{flag_id}", response_model=FlagView, tags=["review"], openapi_extra=review_api.body_inline(FlagUpdate),
        responses=errors_of(400, 401, 403, 404, 409, 413, 415, 422, 503),
        summary="Move a flag pending → reviewed → resolved (409 otherwise); who and when are recorded (review scope)",
    )
    async def update_flag(self, flag_id: str, request: Request) -> dict[str, Any]:
        return await review_api.update_flag(self.services, request, flag_id)

    @api.get(
        "/v1/review/queue", response_model=QueueList, tags=["review"], responses=errors_of(401, 403, 422, 503),
        openapi_extra={"parameters": search_api.parameters_of(review_api.QueueQuery)},
        summary="What needs a look first: pending flags (newest), frustration, lowest quality, each with why",
    )
    async def review_queue(self, request: Request) -> dict[str, Any]:
        return await review_api.review_queue(self.services, request)

    @api.get("/v1/moderation/thresholds", response_model=ThresholdsView, tags=["review"],
             responses=errors_of(401, 403, 503),
             summary="The workspace's moderation thresholds: flag above warn, keep out of datasets above block")
    async def get_moderation_thresholds(self, request: Request) -> dict[str, Any]:
        return await moderation_api.get_thresholds(self.services, request)

    @api.put(
        "/v1/moderation/thresholds", response_model=ThresholdsView, tags=["review"],
        openapi_extra=review_api.body_inline(Thresholds), responses=errors_of(400, 401, 403, 413, 415, 422, 503),
        summary="Set the workspace's moderation thresholds (admins; audited)",
    )
    async def put_moderation_thresholds(self, request: Request) -> dict[str, Any]:
        return await moderation_api.put_thresholds(self.services, request)
