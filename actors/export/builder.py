"""The export's ZIP: everything kept about a recorder, gathered session by session.

    manifest.json                 recorder, generated_at, counts, every other file with its sha256
    recorder.json                 the recorder's row and the keys bound to it (ids and dates only)
    consent.json                  its consent records (null where the deployment has none yet)
    datasets.json                 the datasets that drew on its sessions and the models trained on them
    sessions/<id>/session.json    the session's row (task, pages, status, times, ...)
    sessions/<id>/events.json     its stored events, as stored: redacted
    sessions/<id>/analyses.json   the session's analysis, each screenshot's vision analysis, the vision calls
    sessions/<id>/scores.json     quality scores and reasons, the redaction counts
    sessions/<id>/card.json       the card (title, caption, moments) and the sentiment readings
    sessions/<id>/flags.json      reviewers' flags
    sessions/<id>/moderation.json moderation scores and decisions per step
    sessions/<id>/screenshots.json and screenshots/<file>  the stored images (painted, and raw where kept)

What belongs to a session is named once (actors/storage/recorder_data.py), for the purge too.
One picture or one page of events is held in memory at a time.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

import asyncpg

from actors.ingest.rows import as_event
from actors.storage import export_repo
from actors.storage.objectstore import ObjectStore
from actors.storage.recorder_data import datasets_holding, models_of
from actors.export.zipsink import ZipSink, to_json

__all__ = ["Counts", "MANIFEST", "build"]

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
_EVENTS_PAGE = 1000
# Which of a session row's columns go to which file (the rest stay in session.json).
_SCORES = ("completeness", "selector_reliability", "screenshot_quality", "training_value", "quality_overall",
           "quality_reasons", "quality_parts", "quality_suggestions")
_CARD = ("card_title", "caption", "card", "sentiment", "sentiment_label", "sentiment_polarity")
_ANALYSIS = ("analysis",)
_IMAGE_EXT = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}

Progress = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class Counts:
    sessions: int = 0
    events: int = 0
    screenshots: int = 0
    images: int = 0
    image_bytes: int = 0
    vision_calls: int = 0
    flags: int = 0
    moderation_scores: int = 0
    consent_records: int = 0
    datasets: int = 0
    models: int = 0


def _split(row: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {name: row.pop(name, None) for name in names}


async def _events(conn: asyncpg.Connection, sink: ZipSink, prefix: str, session_id: uuid.UUID) -> int:
    """The events as one JSON array, written a page at a time."""
    n = 0
    with sink.entry(prefix + "events.json") as out:
        out.write(b"[")
        async for page in export_repo.iter_events(conn, session_id, _EVENTS_PAGE):
            for row in page:
                out.write((b",\n" if n else b"\n") + to_json(as_event(row), compact=True))
                n += 1
        out.write(b"\n]\n")
    return n


async def _images(store: ObjectStore, sink: ZipSink, prefix: str, shots: list[dict[str, Any]],
                  counts: Counts) -> None:
    """Each stored image of each screenshot: the painted WebP (what every read serves) and the
    upload where it is kept. An image the store no longer has is noted, not fatal."""
    for shot in shots:
        shot["files"] = []
        for key, kind in ((shot.get("webp_key"), "webp"), (shot.get("raw_key"), "raw")):
            if not key:
                continue
            ext = "webp" if kind == "webp" else _IMAGE_EXT.get(shot.get("content_type") or "", "bin")
            stem = shot["screenshot_id"] if kind == "webp" else f"{shot['screenshot_id']}.raw"
            name = f"{prefix}screenshots/{stem}.{ext}"
            try:
                data = await store.get(key)
            except Exception as exc:  # noqa: BLE001 - a missing object is recorded in the export
                shot["files"].append({"kind": kind, "missing": type(exc).__name__})
                continue
            sink.add(name, data, compress=False)  # images are compressed already
            shot["files"].append({"kind": kind, "file": name.removeprefix(prefix)})
            counts.images += 1
            counts.image_bytes += len(data)


async def _session(conn: asyncpg.Connection, store: ObjectStore, sink: ZipSink, session_id: uuid.UUID,
                   counts: Counts) -> None:
    rows = await export_repo.session_rows(conn, session_id)
    session = rows["sessions"]
    if session is None:  # deleted (and purged) since the list was read
        return
    prefix = f"sessions/{session_id}/"
    scores, card, analysis = _split(session, _SCORES), _split(session, _CARD), _split(session, _ANALYSIS)
    sink.add_json(prefix + "session.json", session)
    counts.events += await _events(conn, sink, prefix, session_id)
    shots = rows["screenshots"]
    await _images(store, sink, prefix, shots, counts)
    sink.add_json(prefix + "screenshots.json", shots)
    sink.add_json(prefix + "analyses.json", {**analysis, "screenshots": [
        {"screenshot_id": s["screenshot_id"], "vision": s.get("vision"), "local_vision": s.get("local_vision"),
         "vision_source": s.get("vision_source")} for s in shots], "vision_calls": rows["vision_calls"]})
    sink.add_json(prefix + "scores.json", {**scores, "redactions": rows["privacy_audit"]})
    sink.add_json(prefix + "card.json", card)
    sink.add_json(prefix + "flags.json", rows["review_flags"])
    sink.add_json(prefix + "moderation.json", rows["moderation_scores"])
    counts.sessions += 1
    counts.screenshots += len(shots)
    counts.vision_calls += len(rows["vision_calls"])
    counts.flags += len(rows["review_flags"])
    counts.moderation_scores += len(rows["moderation_scores"])


async def build(conn: asyncpg.Connection, store: ObjectStore, sink: ZipSink, recorder: dict[str, Any], *,
                export_id: uuid.UUID, progress: Progress | None = None, every: int = 10) -> dict[str, Any]:
    """Write the recorder's export into `sink` (the manifest last) and return the manifest."""
    started, counts = time.perf_counter(), Counts()
    recorder_id = recorder["recorder_id"]
    sessions = await export_repo.recorder_sessions(conn, recorder_id)
    sink.add_json("recorder.json", {"recorder": recorder, "keys": await export_repo.recorder_keys(conn, recorder_id)})
    consent = await export_repo.consent_history(conn, recorder_id)
    counts.consent_records = len(consent or [])
    sink.add_json("consent.json", {"records": consent})
    datasets = await datasets_holding(conn, sessions)
    models = await models_of(conn, [d["dataset_id"] for d in datasets])
    counts.datasets, counts.models = len(datasets), len(models)
    sink.add_json("datasets.json", {"datasets": datasets, "models": models})
    for i, session_id in enumerate(sessions, 1):
        await _session(conn, store, sink, session_id, counts)
        if i % every == 0 or i == len(sessions):
            log.info("export %s: %d/%d sessions, %d events, %d images (%.1f MB) in %.1f s", export_id, i,
                     len(sessions), counts.events, counts.images, counts.image_bytes / 1e6,
                     time.perf_counter() - started)
            if progress is not None:
                await progress({**asdict(counts), "sessions_total": len(sessions)})
    manifest = {"format": FORMAT_VERSION, "export_id": str(export_id), "recorder": recorder,
                "generated_at": dt.datetime.now(dt.UTC).isoformat(), "counts": asdict(counts),
                "files": list(sink.files)}
    sink.add_json(MANIFEST, manifest)
    return manifest
