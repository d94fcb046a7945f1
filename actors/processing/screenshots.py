"""One stored screenshot → its redacted WebP, pHash and local vision measurements.

Runs in a Ray task (CPU-bound: `num_cpus` from ProcessingSettings.compress_num_cpus). Every
step is idempotent: the WebP key is fixed per screenshot, the row moves to `compressed` once,
and a run that finds the work done only finishes the clean-up (deleting the raw upload).
A raw upload that cannot be processed is deleted at once, whatever `keep_raw` says: it is
unredacted, and nothing may ever serve or keep it (PROTOCOL.md: only painted images leave).
Boxes to paint come from the stored events the screenshot belongs to, so the shard runs this
only once those events are committed (or at finalisation).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from actors.errors import InvalidInput, NotFound, PayloadTooLarge, UnsupportedMedia
from actors.media.compress import CompressedImage, compress_screenshot, device_rects, hamming
from actors.media.upload import UploadFacts, covered
from actors.media.vision_local import LocalVision, analyze_image
from actors.privacy.redact import Redactor
from actors.ingest.rows import as_event, jsonb
from actors.processing.task_resources import TaskResources
from actors.storage import processing_repo as repo
from actors.storage import sessions_repo
from configs.processing import CompressSettings

__all__ = ["as_uploaded", "compress_stored_screenshot", "device_pixel_ratio", "near_duplicates", "paint_boxes", "webp_key"]

log = logging.getLogger(__name__)

# How far back a screenshot's page context reaches when no DOM snapshot or navigation is found.
_CONTEXT_EVENTS = 200
# Events that start a new page picture: boxes recorded before them no longer apply.
_PAGE_START = frozenset({"navigation", "dom_snapshot"})


def webp_key(org_id: uuid.UUID, session_id: uuid.UUID, screenshot_id: str) -> str:
    return f"webp/{org_id}/{session_id}/{screenshot_id}.webp"


def device_pixel_ratio(image_width: int, viewport: Mapping[str, Any] | None) -> float:
    """Captures are in device pixels and boxes in CSS pixels: the ratio maps one to the other."""
    css_width = (viewport or {}).get("width")
    if not isinstance(css_width, int | float) or css_width <= 0:
        return 1.0
    ratio = image_width / css_width
    return ratio if 0.5 <= ratio <= 4.0 else 1.0


def paint_boxes(redactor: Redactor, events_newest_first: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Boxes of the sensitive elements on the page the screenshot shows: from the newest event
    back to (and including) the last navigation or DOM snapshot."""
    boxes: list[dict[str, Any]] = []
    for event in events_newest_first:
        for box in redactor.sensitive_boxes(event):
            if box not in boxes:
                boxes.append(box)
        if event.get("type") in _PAGE_START:
            break
    return boxes


async def _context_seq(res: TaskResources, session_id: uuid.UUID, row: Mapping[str, Any]) -> int | None:
    if row["seq"] is not None:
        return int(row["seq"])
    found = await res.pool.fetchval(
        "SELECT seq FROM interactions WHERE session_id = $1 AND type = 'screenshot'"
        " AND payload->>'screenshot_id' = $2 ORDER BY seq LIMIT 1",
        session_id, row["screenshot_id"],
    )
    if found is not None:
        return int(found)
    # No event names this frame: judge it against the newest page the session recorded.
    return await res.pool.fetchval("SELECT max_seq FROM sessions WHERE session_id = $1", session_id)


async def _boxes(res: TaskResources, redactor: Redactor, session_id: uuid.UUID, row: Mapping[str, Any]) -> list[dict[str, Any]]:
    seq = await _context_seq(res, session_id, row)
    if seq is None or seq < 0:
        return []
    rows = await repo.events_before(res.pool, session_id, seq, _CONTEXT_EVENTS)
    return paint_boxes(redactor, [as_event(r) for r in rows])


async def _drop_raw(res: TaskResources, session_id: uuid.UUID, row: Mapping[str, Any], *, failed: bool = False) -> None:
    """Delete the raw upload once its WebP is durable (unless kept for debugging), or at once
    when it failed: an unpaintable raw file is never kept."""
    if row["raw_key"] is None or (res.settings.processing.keep_raw and not failed):
        return
    await res.store.delete(row["raw_key"])
    await repo.drop_raw_key(res.pool, session_id, row["screenshot_id"])


async def _fail(res: TaskResources, session_id: uuid.UUID, row: Mapping[str, Any], error: str) -> dict[str, Any]:
    await repo.mark_screenshot_failed(res.pool, session_id, row["screenshot_id"], error)
    await _drop_raw(res, session_id, row, failed=True)
    return {"screenshot_id": row["screenshot_id"], "status": "failed"}


async def compress_stored_screenshot(res: TaskResources, session_id: uuid.UUID, screenshot_id: str) -> dict[str, Any]:
    """Compress one screenshot if not done yet; returns its row's outcome for the caller."""
    row = await sessions_repo.fetch_screenshot(res.pool, session_id, screenshot_id)
    if row is None:
        return {"screenshot_id": screenshot_id, "status": "missing"}
    if row["status"] == "compressed":
        await _drop_raw(res, session_id, row)
        return {"screenshot_id": screenshot_id, "status": "compressed"}
    if row["status"] == "failed" or row["raw_key"] is None:
        await _drop_raw(res, session_id, row, failed=True)  # a failure an older run left behind
        return {"screenshot_id": screenshot_id, "status": "failed"}
    session = await repo.session_row(res.pool, session_id)
    if session is None:
        return {"screenshot_id": screenshot_id, "status": "missing"}
    redactor = Redactor(res.settings.processing.privacy)
    boxes = await _boxes(res, redactor, session_id, row)
    try:
        raw = await res.store.get(row["raw_key"])
    except NotFound:
        return await _fail(res, session_id, row, "the raw upload is gone")
    viewport = session["viewport"]
    dpr = device_pixel_ratio(row["width"], jsonb(viewport))
    facts = jsonb(row.get("upload_facts"))
    try:
        if facts is None:
            image = compress_screenshot(raw, res.settings.processing.compress, boxes, device_pixel_ratio=dpr)
            local = analyze_image(image.webp)
        else:
            image, local = as_uploaded(raw, row, UploadFacts.model_validate(facts), boxes, dpr,
                                       res.settings.processing.compress)
    except (InvalidInput, UnsupportedMedia, PayloadTooLarge) as exc:
        # Checked at upload, so this is a decoder disagreement: keep the session, lose the frame.
        log.warning("screenshot %s of session %s cannot be compressed: %s", screenshot_id, session_id, exc)
        return await _fail(res, session_id, row, str(exc))
    key = webp_key(session["org_id"], session_id, screenshot_id)
    await res.store.put(key, image.webp, "image/webp")
    result = {
        "webp_key": key, "webp_bytes": image.compressed_bytes, "width": image.width,
        "height": image.height, "webp_sha256": image.sha256, "phash": image.phash,
        "boxes_painted": image.boxes_painted, "local_vision": local.model_dump(mode="json"),
    }
    if await repo.mark_screenshot_compressed(res.pool, session_id, screenshot_id, result):
        await repo.add_privacy_counts(res.pool, session_id, "screenshots", {"BOX": image.boxes_painted})
    await _drop_raw(res, session_id, row)
    return {"screenshot_id": screenshot_id, "status": "compressed", "original_bytes": image.original_bytes,
            "webp_bytes": image.compressed_bytes}


def as_uploaded(
    raw: bytes, row: Mapping[str, Any], facts: UploadFacts, boxes: Sequence[Mapping[str, Any]],
    dpr: float, settings: CompressSettings,
) -> tuple[CompressedImage, LocalVision]:
    """A WebP the client painted: stored unchanged when its boxes cover every box the server
    knows of; otherwise only the uncovered boxes are painted, and that picture is encoded.
    Either way `boxes_painted` counts every server box the stored picture hides."""
    rects = device_rects(boxes, dpr, (row["width"], row["height"]))
    missing = [box for box, rect in zip(boxes, rects) if rect is not None and not covered(rect, facts.painted)]
    hidden = sum(rect is not None for rect in rects)
    if missing:
        painted = compress_screenshot(raw, settings, missing, device_pixel_ratio=dpr)
        return painted.model_copy(update={"boxes_painted": hidden}), analyze_image(painted.webp)
    if hashlib.sha256(raw).hexdigest() != row["sha256"]:  # the facts describe other bytes
        raise UnsupportedMedia("the stored upload is not the one measured at the ingress")
    image = CompressedImage(
        webp=raw, source_format="WEBP", original_width=row["width"], original_height=row["height"],
        width=row["width"], height=row["height"], original_bytes=len(raw), compressed_bytes=len(raw),
        boxes_painted=hidden, phash=facts.phash, sha256=row["sha256"],
    )
    return image, LocalVision.model_validate(facts.local_vision)


def near_duplicates(rows: Sequence[Mapping[str, Any]], max_bits: int) -> list[tuple[str, str | None]]:
    """(screenshot_id, the earlier frame it repeats or None) for compressed frames in order.

    Each frame is compared with the last frame kept, so a slow drift does not chain a whole
    session onto its first picture. Duplicates are flagged, never dropped: pHash also calls
    same-layout pages with different text alike, and the archive keeps every frame."""
    out: list[tuple[str, str | None]] = []
    kept: Mapping[str, Any] | None = None
    for row in rows:
        if row["status"] != "compressed" or not row["phash"]:
            continue
        if kept is not None and hamming(row["phash"], kept["phash"]) <= max_bits:
            out.append((row["screenshot_id"], kept["screenshot_id"]))
        else:
            out.append((row["screenshot_id"], None))
            kept = row
    return out
