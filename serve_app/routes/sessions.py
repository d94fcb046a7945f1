"""Recording: sessions, their events, stream and screenshots, and what was stored of them."""

# No `from __future__ import annotations`: FastAPI must see real types on the route methods
# that Serve rewrites into class-based views.
from typing import Any

from fastapi import Request, WebSocket
from fastapi.responses import JSONResponse, Response

from serve_app import pages_api, results_api, screenshots_api, search_api, sessions_api, stream_api
from serve_app.bodies import (
    AckResult,
    EventsBatch,
    FinishAccepted,
    FinishRequest,
    ScreenshotStored,
    SessionCreate,
    SessionCreated,
    SessionView,
)
from serve_app.openapi import body_of, errors_of
from serve_app.pages_api import ReplayBundle
from serve_app.results_api import EventsPage
from serve_app.routes.api import RouteBase, SESSION_PATH, api
from serve_app.search_api import SessionList


class SessionRoutes(RouteBase):
    @api.post(
        "/v1/sessions", status_code=201, response_model=SessionCreated, tags=["sessions"],
        openapi_extra=body_of(SessionCreate), responses=errors_of(400, 401, 403, 408, 409, 413, 415, 422, 503),
        summary="Create a session (idempotent by session_id)",
    )
    async def create_session(self, request: Request) -> JSONResponse:
        return await sessions_api.create_session(self.services, request)

    @api.get(
        "/v1/sessions", response_model=SessionList, tags=["sessions"],
        responses=errors_of(401, 403, 422, 503), openapi_extra={"parameters": search_api.SESSION_LIST_PARAMETERS},
        summary="List and search the organisation's sessions: filters, sorts, keyset pages, total (read scope)",
    )
    async def list_sessions(self, request: Request) -> dict[str, Any]:
        return await search_api.list_sessions(self.services, request)

    @api.get(
        SESSION_PATH, response_model=SessionView, tags=["sessions"],
        responses=errors_of(401, 403, 404, 503), summary="Read a session's state and counters",
    )
    async def get_session(self, session_id: str, request: Request) -> dict[str, Any]:
        return await sessions_api.get_session(self.services, request, session_id)

    @api.post(
        SESSION_PATH + "/finish", status_code=202, response_model=FinishAccepted, tags=["sessions"],
        openapi_extra=body_of(FinishRequest, required=False),
        responses=errors_of(400, 401, 403, 404, 408, 413, 422, 503), summary="Finish a session (harmless twice)",
    )
    async def finish_session(self, session_id: str, request: Request) -> JSONResponse:
        return await sessions_api.finish_session(self.services, request, session_id)

    @api.post(
        SESSION_PATH + "/events", response_model=AckResult, tags=["events"],
        openapi_extra=body_of(EventsBatch),
        responses=errors_of(400, 401, 403, 404, 408, 409, 413, 415, 422, 429, 503),
        summary="Store a batch of events; answered after commit",
    )
    async def post_events(self, session_id: str, request: Request) -> dict[str, Any]:
        return await sessions_api.post_events(self.services, request, session_id)

    @api.websocket(SESSION_PATH + "/stream")
    async def stream(self, websocket: WebSocket, session_id: str) -> None:
        await stream_api.stream_session(self.services, websocket, session_id)

    @api.put(
        SESSION_PATH + "/screenshots/{screenshot_id}", status_code=201, response_model=ScreenshotStored,
        tags=["screenshots"], responses=errors_of(401, 403, 404, 408, 409, 413, 415, 422, 503),
        openapi_extra={"requestBody": {"required": True, "content": {
            m: {"schema": {"type": "string", "format": "binary"}} for m in screenshots_api.MEDIA_TYPES
        }}, "parameters": [screenshots_api.PAINTED_BOXES_PARAMETER]},
        summary="Upload a screenshot (idempotent; 200 when repeated)",
    )
    async def put_screenshot(self, session_id: str, screenshot_id: str, request: Request) -> JSONResponse:
        return await screenshots_api.put_screenshot(self.services, request, session_id, screenshot_id)

    @api.get(
        SESSION_PATH + "/screenshots/{screenshot_id}", tags=["screenshots"],
        responses={200: {"content": {"image/webp": {}}}, **errors_of(401, 403, 404, 409, 503)},
        response_class=Response, summary="Download a painted screenshot (409 screenshot_not_ready before)",
    )
    async def get_screenshot(self, session_id: str, screenshot_id: str, request: Request) -> Response:
        return await screenshots_api.get_screenshot(self.services, request, session_id, screenshot_id)

    @api.get(
        SESSION_PATH + "/events", response_model=EventsPage, tags=["results"],
        responses=errors_of(401, 403, 404, 422, 503),
        summary="Read the stored (redacted) events, paged by seq",
        openapi_extra={"parameters": [
            {"name": "after_seq", "in": "query", "schema": {"type": "integer", "minimum": -1, "default": -1}},
            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "default": 500}},
        ]},
    )
    async def get_events(self, session_id: str, request: Request) -> dict[str, Any]:
        return await results_api.get_events(self.services, request, session_id)

    @api.get(
        SESSION_PATH + "/archive", tags=["results"], response_class=Response,
        responses={200: {"content": {"application/zip": {}}}, **errors_of(401, 403, 404, 503)},
        summary="Download the session's archive (ZIP with manifest.json)",
    )
    async def get_archive(self, session_id: str, request: Request) -> Response:
        return await results_api.get_archive(self.services, request, session_id)

    @api.get(
        SESSION_PATH + "/replay", response_model=ReplayBundle, tags=["results"],
        responses=errors_of(401, 403, 404, 503),
        summary="What the replay page needs besides the events: viewport, context analysis, screenshot timeline",
    )
    async def get_replay(self, session_id: str, request: Request) -> dict[str, Any]:
        return await pages_api.replay_bundle(self.services, request, session_id)
