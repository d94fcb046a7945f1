"""The contact sheet of a session's card (issue 19.1): the WebP grid of its key frames that the
cards stage stored beside the screenshots, served to whoever may read the session."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from actors.errors import NotFound
from actors.storage import cards_repo
from actors.storage.postgres import with_retries
from serve_app.services import Services
from serve_app.sessions_api import readable_session

__all__ = ["get_contact_sheet"]


async def get_contact_sheet(services: Services, request: Request, raw_id: str) -> Response:
    _, session_id = await readable_session(services, request, raw_id)
    pool = await services.db()
    key = await with_retries(lambda: cards_repo.sheet_key(pool, session_id), attempts=2, what="card read")
    if key is None:
        raise NotFound(f"session {session_id} has no contact sheet (not carded yet, or no frames)")
    data = await services.store.get(key)
    return Response(content=data, media_type="image/webp", headers={"Cache-Control": "no-store"})
