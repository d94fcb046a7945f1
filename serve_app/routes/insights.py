"""What the dashboard and the pages watch: stats, trends and the live stream."""

# No `from __future__ import annotations`: FastAPI must see real types on the route methods
# that Serve rewrites into class-based views.
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from serve_app import analytics_api, dashboard_api, live_api, search_api
from serve_app.analytics_api import TrendsQuery, TrendsResponse
from serve_app.dashboard_api import StatsResponse
from serve_app.openapi import errors_of
from serve_app.routes.api import RouteBase, api


class InsightRoutes(RouteBase):
    @api.get(
        "/v1/stats", response_model=StatsResponse, tags=["dashboard"],
        responses=errors_of(401, 403, 422, 503),
        summary="The organisation's sessions at a glance: statuses, live sessions, event rate, quality",
        openapi_extra={"parameters": [
            {"name": "limit", "in": "query", "description": "how many live sessions to list",
             "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
        ]},
    )
    async def get_stats(self, request: Request) -> dict[str, Any]:
        return await dashboard_api.get_stats(self.services, request)

    @api.get(
        "/v1/analytics/trends", response_model=TrendsResponse, tags=["sessions"],
        responses=errors_of(401, 403, 422, 503),
        openapi_extra={"parameters": search_api.parameters_of(TrendsQuery)},
        summary="One metric of the organisation's sessions by day, site, intent or type (cached a few seconds)",
    )
    async def get_trends(self, request: Request) -> dict[str, Any]:
        return await analytics_api.get_trends(self.services, request)

    @api.get(
        "/v1/live", tags=["live"], response_class=Response,
        responses={200: {"content": {"text/event-stream": {}}}, **errors_of(401, 403, 422, 429, 503)},
        summary="Server-sent events of the organisation: session.created, session.finalized (status, quality)",
        description="Each message has an `id:`; reconnect with `Last-Event-ID` (or `?since=`) to catch up on "
        "what was missed. The stream ends after `live.max_stream_s`; reconnect then. Authenticate with the "
        "Authorization header (read scope): the pages read it with fetch(), never with the key in the URL.",
        openapi_extra={"parameters": [
            {"name": "since", "in": "query", "schema": {"type": "integer", "minimum": 0},
             "description": "catch up from after this event id"},
            {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"},
             "description": "as `since`; a reconnecting SSE client sends it"},
        ]},
    )
    async def live(self, request: Request) -> Response:
        return await live_api.stream_live(self.services, self.live, request)
