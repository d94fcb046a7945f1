"""The pages: dashboard, session list, replay and trends, and their files."""

# No `from __future__ import annotations`: FastAPI must see real types on the route methods
# that Serve rewrites into class-based views.
from fastapi.responses import HTMLResponse, Response

from serve_app import dashboard_api, pages_api
from serve_app.openapi import errors_of
from serve_app.routes.api import RouteBase, api


class PageRoutes(RouteBase):
    @api.get(
        "/dashboard", tags=["dashboard"], response_class=HTMLResponse, openapi_extra={"security": []},
        summary="The operations dashboard page (no key: it holds no data; it asks for one)",
    )
    async def dashboard_page(self) -> Response:
        return pages_api.page("dashboard")

    @api.get(
        "/dashboard/dashboard.js", tags=["dashboard"], response_class=Response,
        openapi_extra={"security": []}, summary="The dashboard's script",
    )
    async def dashboard_script(self) -> Response:
        return dashboard_api.static_file("dashboard.js")

    @api.get(
        "/dashboard/dashboard.css", tags=["dashboard"], response_class=Response,
        openapi_extra={"security": []}, summary="The dashboard's stylesheet",
    )
    async def dashboard_style(self) -> Response:
        return dashboard_api.static_file("dashboard.css")

    @api.get("/sessions", tags=["pages"], response_class=HTMLResponse, openapi_extra={"security": []},
             summary="The session list page (no key: it holds no data; it asks for one)")
    async def sessions_page(self) -> Response:
        return pages_api.page("sessions")

    @api.get("/sessions/{session_id}", tags=["pages"], response_class=HTMLResponse,
             openapi_extra={"security": []}, summary="The session replay and review page")
    async def session_page(self, session_id: str) -> Response:
        return pages_api.page("session")

    @api.get("/trends", tags=["pages"], response_class=HTMLResponse, openapi_extra={"security": []},
             summary="The trends page")
    async def trends_page(self) -> Response:
        return pages_api.page("trends")

    @api.get("/pages/{name}", tags=["pages"], response_class=Response, openapi_extra={"security": []},
             responses=errors_of(404), summary="The pages' scripts and stylesheet")
    async def page_file(self, name: str) -> Response:
        return pages_api.page_file(name)
