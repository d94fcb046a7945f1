"""The browsing pages (/sessions, /sessions/{id}, /trends) and the one route they need that
the API lacked: a session's replay bundle (its view, viewport, context analysis and the
screenshot timeline); the events come from the events route, the frames from the screenshot
route, the list from GET /v1/sessions, the charts from GET /v1/analytics/trends.

The pages are static files with the dashboard's strict CSP: no inline code, nothing from
another origin, text only through textContent, screenshots drawn on a canvas from fetched
bytes (so the key goes in the Authorization header and img-src needs nothing beyond 'self').
They hold no data, so serving them needs no key; the key comes from the URL fragment or the
form as on /dashboard and stays in sessionStorage.

The four pages (/dashboard too) share their head and their key / sign-in forms. There is no
build step and the CSP allows no inline code, so the server fills them in: a page's line
`<!-- shared:NAME -->` becomes static/_NAME.html (render_page).
"""

from __future__ import annotations

import functools
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from actors.errors import NotFound
from actors.storage import replay_repo
from actors.storage.postgres import with_retries
from serve_app.dashboard_api import STATIC_HEADERS
from serve_app.sessions_api import readable_session, session_view
from serve_app.services import Services

__all__ = ["PAGES", "PAGE_FILES", "ReplayBundle", "page", "page_file", "render_page", "replay_bundle"]

PAGES_DIR = Path(__file__).parent / "static"
PAGES = {"dashboard": "dashboard.html", "sessions": "sessions.html", "session": "session.html",
         "trends": "trends.html"}
# What each page's key form asks for (the shared form's {key_scope}).
_KEY_SCOPES = {"session": "<code>read</code>; <code>review</code> to flag"}
_SHARED = re.compile(r"^[ \t]*<!-- shared:(\w+) -->\n", re.MULTILINE)
_SHARED_PARTS = {"head": "_head.html", "signin": "_signin.html"}
# The pages' scripts and stylesheet, served as they are (the pages go through render_page).
PAGE_FILES = {
    "pages.css": "text/css; charset=utf-8",
    "common.js": "text/javascript; charset=utf-8",
    "sessions.js": "text/javascript; charset=utf-8",
    "session.js": "text/javascript; charset=utf-8",
    "trends.js": "text/javascript; charset=utf-8",
}


class Frame(BaseModel):
    screenshot_id: str
    seq: int | None = Field(description="the event the screenshot belongs to; the frame shows from it on")
    captured_at: datetime | None
    trigger: str | None
    status: str = Field(description="only 'compressed' frames can be downloaded (painted)")
    width: int = Field(description="pixels of the stored, painted image")
    height: int
    near_duplicate_of: str | None


class ReplayBundle(BaseModel):
    session: dict[str, Any] = Field(description="as GET /v1/sessions/{id}")
    viewport: dict[str, Any] | None = Field(description="the recorder's viewport in CSS px: boxes scale by image width / viewport width")
    context: dict[str, Any] | None = Field(description="pages, intents (one per event by seq), intent_counts, navigation_pattern, shopping_style, frustration; null before analysis")
    quality_parts: dict[str, float] | None = Field(description="the sub-scores behind the quality components")
    card: dict[str, Any] | None = Field(None, description="title, caption, source (model or local, with the reason), key moments and the contact sheet's frames; null before the cards stage")
    sentiment: dict[str, Any] | None = Field(None, description="the typed text's sentiment summary (readings by seq, never the text); null before the cards stage")
    frames: list[Frame]
    links: dict[str, str] = Field(description="the events and archive routes of this session")


def _json(text: str | None) -> Any:
    return json.loads(text) if text else None


async def replay_bundle(services: Services, request: Request, raw_id: str) -> dict[str, Any]:
    row, session_id = await readable_session(services, request, raw_id)
    pool = await services.db()
    extras = await with_retries(lambda: replay_repo.replay_extras(pool, session_id, row["org_id"]),
                                attempts=2, what="replay read")
    shots = await with_retries(lambda: replay_repo.timeline(pool, session_id), attempts=2, what="replay read")
    if extras is None:
        raise NotFound(f"no session {session_id}")
    analysis = _json(extras["analysis"]) or {}
    base = f"/v1/sessions/{session_id}"
    return {
        "session": session_view(row),
        "viewport": _json(extras["viewport"]),
        "context": analysis.get("context"),
        "quality_parts": _json(extras["quality_parts"]),
        "card": _json(extras["card"]),
        "sentiment": _json(extras["sentiment"]),
        "frames": [{
            "screenshot_id": s["screenshot_id"], "seq": s["seq"], "captured_at": s["captured_at"],
            "trigger": s["trigger"], "status": s["status"],
            "width": s["webp_width"] or s["width"], "height": s["webp_height"] or s["height"],
            "near_duplicate_of": s["near_duplicate_of"],
        } for s in shots],
        "links": {"events": f"{base}/events", "archive": f"{base}/archive"},
    }


@functools.lru_cache(maxsize=len(PAGE_FILES))
def _read(name: str) -> bytes:
    return (PAGES_DIR / name).read_bytes()


def page_file(name: str) -> Response:
    """One of the pages' static files, with the dashboard's CSP and headers."""
    media_type = PAGE_FILES.get(name)
    if media_type is None:
        raise NotFound(f"no page file {name[:64]!r}")
    return Response(content=_read(name), media_type=media_type, headers=STATIC_HEADERS)


@functools.lru_cache(maxsize=len(PAGES))
def render_page(name: str) -> bytes:
    """The page's HTML with each `<!-- shared:NAME -->` line replaced by static/_NAME.html;
    KeyError for an unknown page or part (a mistake in the files, caught by the unit test)."""
    scope = _KEY_SCOPES.get(name, "<code>read</code>")

    def part(match: re.Match[str]) -> str:
        text = (PAGES_DIR / _SHARED_PARTS[match.group(1)]).read_text("utf-8")
        return text.replace("{key_scope}", scope)

    return _SHARED.sub(part, (PAGES_DIR / PAGES[name]).read_text("utf-8")).encode("utf-8")


def page(name: str) -> Response:
    """One of the four pages, its shared parts filled in, with the dashboard's CSP and headers."""
    return Response(content=render_page(name), media_type="text/html; charset=utf-8", headers=STATIC_HEADERS)
