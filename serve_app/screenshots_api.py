"""Screenshot upload (PUT, idempotent) and download (the painted WebP only).

An image is checked before anything is written: its declared type, its size in bytes, its
pixel count (against decompression bombs), and a full decode (against truncated or hostile
files). The bytes become durable in the object store first, the row in PostgreSQL second, and
only then does the client get its 2xx.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
import uuid
import warnings
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from actors.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    NotReady,
    PayloadTooLarge,
    UnsupportedMedia,
    details_from_validation_error,
)
from actors import quotas
from actors.ingest.events import Timestamp
from actors.storage import sessions_repo
from actors.storage.postgres import with_retries
from serve_app.http_io import bearer_key, read_body, session_uuid
from serve_app.services import Services
from serve_app.sessions_api import readable_session

__all__ = ["put_screenshot", "get_screenshot", "inspect_image", "MEDIA_TYPES"]

# Content-Type → (Pillow format, file extension)
MEDIA_TYPES = {"image/png": ("PNG", "png"), "image/jpeg": ("JPEG", "jpg"), "image/webp": ("WEBP", "webp")}
_SCREENSHOT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
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
    fmt, _ = MEDIA_TYPES[media_type]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[fmt]) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise PayloadTooLarge(
                        f"the image is {width}x{height} pixels; the limit is {max_pixels} pixels"
                    )
                if fmt == "PNG":
                    # Pillow's decoder checks neither the chunk CRCs nor the IEND chunk, so a
                    # corrupt or cut-off PNG would be stored, served, and sent to a fine-tune
                    # provider that refuses it; verify() checks both (and needs a fresh open).
                    img.verify()
            with Image.open(io.BytesIO(data), formats=[fmt]) as img:
                img.load()
    except PayloadTooLarge:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PayloadTooLarge("the image declares too many pixels") from None
    except Exception:  # noqa: BLE001 - Pillow raises many types for bad data; all mean the same
        raise UnsupportedMedia(f"the body is not a decodable {media_type} image") from None
    return width, height


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
    principal = await services.principal(bearer_key(request), "ingest")
    session_id = session_uuid(raw_id)
    screenshot_id = _screenshot_id(raw_shot)
    query = _query(request)
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media not in MEDIA_TYPES:
        raise UnsupportedMedia(f"Content-Type must be one of {sorted(MEDIA_TYPES)}")
    limits = services.settings.ingest
    data = await read_body(request, limits.max_screenshot_bytes)
    services.guard.charge_screenshot_bytes(principal, len(data))  # before the decode's CPU
    width, height = await asyncio.to_thread(inspect_image, data, media, limits.max_screenshot_pixels)
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
