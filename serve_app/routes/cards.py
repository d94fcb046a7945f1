"""Session cards: the contact sheet image (serve_app/cards_api.py)."""

# No `from __future__ import annotations`: FastAPI must see real types on the route methods
# that Serve rewrites into class-based views.
from fastapi import Request
from fastapi.responses import Response

from serve_app import cards_api
from serve_app.openapi import errors_of
from serve_app.routes.api import SESSION_PATH, RouteBase, api


class CardRoutes(RouteBase):
    @api.get(
        SESSION_PATH + "/contact-sheet", tags=["sessions"],
        responses={200: {"content": {"image/webp": {}}}, **errors_of(401, 403, 404, 503)},
        response_class=Response,
        summary="The card's contact sheet: a WebP grid of the key frames, acted-on elements boxed "
                "(404 before the cards stage or when the session has no frames)",
    )
    async def get_contact_sheet(self, session_id: str, request: Request) -> Response:
        return await cards_api.get_contact_sheet(self.services, request, session_id)
