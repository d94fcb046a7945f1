"""Screenshot upload (PUT, idempotent) and download (the painted WebP only).

An image is checked before anything is written: its declared type, its size in bytes, its
pixel count (against decompression bombs), and a full decode (against truncated or hostile
files). That one decode also measures a WebP whose client lists the boxes it painted
(`X-Painted-Boxes`), so the compress task can store it without a second decode or encode
(actors/media/upload.py). The bytes become durable in the object store first, the row in
PostgreSQL second, and only then does the client get its 2xx.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from actors.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    NotReady,
    UnsupportedMedia,
    details_from_validation_error,
)
from actors import quotas
from actors.ingest.events import Timestamp
from actors.media.upload import (
    MAX_PAINTED_BOXES,
    PAINTED_BOXES_HEADER,
    Rect,
    UploadFacts,
    open_checked,
    parse_painted_boxes,
    webp_upload_facts,
)
from actors.storage import sessions_repo
from actors.storage.postgres import with_retries
from serve_app.http_io import read_body, session_uuid
from serve_app.services import Services
from serve_app.sessions_api import readable_session

__all__ = ["put_screenshot", "get_screenshot", "check_upload", "inspect_image", "MEDIA_TYPES", "PAINTED_BOXES_PARAMETER"]

# Content-Type → (Pillow format, file extension)
MEDIA_TYPES = {"image/png": ("PNG", "png"), "image/jpeg": ("JPEG", "jpg"), "image/webp": ("WEBP", "webp")}
_SCREENSHOT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# OpenAPI: the optional header of a client that paints sensitive boxes itself (PROTOCOL.md).
PAINTED_BOXES_PARAMETER: dict[str, Any] = {
    "name": PAINTED_BOXES_HEADER, "in": "header", "required": False,
    "description": (
        f"JSON list of at most {MAX_PAINTED_BOXES} `[x, y, width, height]` boxes, in the image's own "
        "pixels, that the client painted over before encoding. The server still paints every sensitive "
        "box it knows of that no listed box covers; a WebP within the limits (opaque, one frame, no "
        "EXIF or XMP, no wider than stored screenshots) whose boxes are all covered is stored as "
        "uploaded, without a second encode. Absent: nothing painted (the full path). Malformed: 422."
    ),
    "schema": {"type": "string", "example": "[[96, 196, 408, 48]]"},
}
# A screenshot is painted once the events it belongs to are committed, or at finalisation:
# usually within a second or two.
NOT_READY_RETRY_S = 2.0


class ScreenshotQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seq: int | None = Field(None, ge=0, le=2**53)
    captured_at: Timestamp | None = None
    trigger: str | None = Field(None, pattern="^(navigation|click|input|modal|interval|other)$")


def inspect_image(data: bytes, media_type: str, max_pixels: int) -> tuple[int, int]:
    """(width, height) of a fully decodable image of the declared type, or a clear refusal."""
    with open_checked(data, MEDIA_TYPES[media_type][0], max_pixels, label=media_type) as img:
        return img.size


def check_upload(
    data: bytes, media_type: str, max_pixels: int, max_width: int, painted: list[Rect] | None
) -> tuple[int, int, UploadFacts | None]:
    """One decode: the size, and for a WebP whose painted boxes the client lists, what the
    compress task needs to store it as is (None: the full path)."""
    with open_checked(data, MEDIA_TYPES[media_type][0], max_pixels, label=media_type) as img:
        facts = None if painted is None or media_type != "image/webp" else webp_upload_facts(img, painted, max_width)
        return img.width, img.height, facts


def _query(request: Request) -> ScreenshotQuery:
    params: dict[str, object] = dict(request.query_params)
    # Query strings carry text; epoch milliseconds arrive as digits and mean a number.
    if isinstance(params.get("captured_at"), str) and params["captured_at"].isdigit():  # type: ignore[union-attr]
        params["captured_at"] = int(params["captured_at"])  # type: ignore[arg-type]
    if isinstance(params.get("seq"), str) and params["seq"].lstrip("-").isdigit():  # type: ignore[union-attr]
        params["seq"] = int(params["seq"])  # type: ignore[arg-type]
    try:
        return ScreenshotQuery.model_validate(params)
    except ValidationError as exc:
        raise InvalidInput("invalid query parameters", details_from_validation_error(exc, "query")) from None


def _screenshot_id(raw: str) -> str:
    if not _SCREENSHOT_ID.match(raw):
        raise InvalidInput(
            "invalid screenshot_id",
            [{"field": "screenshot_id", "error": "1-128 characters: letters, digits, '.', '_', '-'"}],
        )
    return raw


async def put_screenshot(services: Services, request: Request, raw_id: str, raw_shot: str) -> JSONResponse:
    principal = await services.authorize(request)
    session_id = session_uuid(raw_id)
    await services.check_session(principal, session_id)
    await services.check_consent(principal)  # before the body is read: nothing is stored
    screenshot_id = _screenshot_id(raw_shot)
    query = _query(request)
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media not in MEDIA_TYPES:
        raise UnsupportedMedia(f"Content-Type must be one of {sorted(MEDIA_TYPES)}")
    painted = parse_painted_boxes(request.headers.get(PAINTED_BOXES_HEADER))
    limits = services.settings.ingest
    data = await read_body(request, limits.max_screenshot_bytes)
    services.guard.charge_screenshot_bytes(principal, len(data))  # before the decode's CPU
    width, height, facts = await asyncio.to_thread(
        check_upload, data, media, limits.max_screenshot_pixels,
        services.settings.processing.compress.max_width, painted,
    )
    shard = services.shard(session_id)
    await shard.check_recording(principal.org_id, session_id)
    digest = hashlib.sha256(data).hexdigest()
    answer = {"screenshot_id": screenshot_id, "bytes": len(data)}
    if await _already_stored(services, session_id, screenshot_id, digest):
        return JSONResponse(answer, status_code=200)
    pool = await services.db()
    taken = await quotas.charge(pool, services.settings.quotas, principal.org_id, "stored_bytes", len(data))
    try:
        raw_key = f"raw/{principal.org_id}/{session_id}/{screenshot_id}.{MEDIA_TYPES[media][1]}"
        await services.store.put(raw_key, data, media)
        row: dict[str, Any] = {
            "session_id": session_id, "screenshot_id": screenshot_id, "seq": query.seq,
            "captured_at": query.captured_at, "trigger": query.trigger, "content_type": media,
            "raw_key": raw_key, "bytes": len(data), "width": width, "height": height, "sha256": digest,
            "upload_facts": None if facts is None else facts.model_dump(mode="json"),
        }
        created = await shard.register_screenshot(principal.org_id, session_id, row)
    except BaseException:
        await quotas.refund(pool, taken)
        raise
    if not created:  # a concurrent twin stored it first: its bytes are counted once
        await quotas.refund(pool, taken)
    services.metrics.screenshots.labels("created" if created else "repeat").inc()
    return JSONResponse(answer, status_code=201 if created else 200)


async def _already_stored(services: Services, session_id: uuid.UUID, screenshot_id: str, digest: str) -> bool:
    """True for a repeat of the same upload; a different image under the same id is a conflict."""
    pool = await services.db()
    row = await with_retries(
        lambda: sessions_repo.fetch_screenshot(pool, session_id, screenshot_id), attempts=2, what="screenshot read"
    )
    if row is None:
        return False
    if row["sha256"] != digest:
        raise Conflict(
            f"screenshot {screenshot_id} was stored with different content", code="screenshot_conflict"
        )
    return True


async def get_screenshot(services: Services, request: Request, raw_id: str, raw_shot: str) -> Response:
    _, session_id = await readable_session(services, request, raw_id)
    if not _SCREENSHOT_ID.match(raw_shot):  # no upload could have stored it; and NUL cannot reach SQL
        raise NotFound(f"no screenshot {raw_shot[:128]!r} in session {session_id}")
    pool = await services.db()
    row = await with_retries(
        lambda: sessions_repo.fetch_screenshot(pool, session_id, raw_shot), attempts=2, what="screenshot read"
    )
    if row is None:
        raise NotFound(f"no screenshot {raw_shot[:128]!r} in session {session_id}")
    # Only the painted WebP ever leaves: the raw upload is unredacted staging.
    if row["status"] == "failed":
        raise NotFound(f"screenshot {raw_shot!r} could not be processed; it is never served",
                       code="screenshot_failed")
    if row["status"] != "compressed" or not row["webp_key"]:
        raise NotReady(f"screenshot {raw_shot!r} is not painted yet; retry later",
                       retry_after_s=NOT_READY_RETRY_S, code="screenshot_not_ready")
    data = await services.store.get(row["webp_key"])
    return Response(content=data, media_type="image/webp", headers={"Cache-Control": "no-store"})
