"""The archive of a finished session: one ZIP in the object store, checked against its manifest.

Layout: `manifest.json` (session metadata and every other file with its size and sha256),
`events.jsonl` (the stored, redacted events), `screenshots/<id>.webp` (redacted frames) and
`analysis.json`, then the session card when it has one (`card.json` with the sentiment summary,
`contact-sheet.webp`). Entries carry a fixed timestamp and are written in a fixed order, so building
the same session twice gives the same bytes: a re-run after a crash overwrites the object
with an identical one. After the upload the object is read back and verified before its key
and sha256 are recorded on the session.
"""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
import uuid
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from actors.cards.step import card_entries
from actors.errors import DependencyUnavailable
from actors.ingest.rows import as_event
from actors.processing.task_resources import TaskResources
from actors.storage import processing_repo as repo

__all__ = ["ARCHIVE_FORMAT", "archive_key", "archive_session", "build_archive", "verify_archive"]

ARCHIVE_FORMAT = "tracemill-session-archive/1"
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time ZIP can store: no build time in the bytes
_SESSION_FIELDS = ("session_id", "org_id", "type", "task", "outcome", "event_count",
                   "screenshot_count", "duplicate_count", "acked_through", "max_seq",
                   "started_at", "ended_at", "created_at", "client", "user_agent", "viewport")


def archive_key(org_id: uuid.UUID, session_id: uuid.UUID) -> str:
    return f"archives/{org_id}/{session_id}.zip"


def _entry(name: str, compress: bool) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    return info


def build_archive(target: Path, session: Mapping[str, Any], files: Iterable[tuple[str, bytes]]) -> str:
    """Write the ZIP to `target`; returns the manifest's sha256 of the whole file.

    `files` are (path inside the archive, bytes) in the order they should appear."""
    listed: list[dict[str, Any]] = []
    with zipfile.ZipFile(target, "w") as zf:
        for name, data in files:
            # WebP is compressed already; deflating it again costs time and saves nothing.
            zf.writestr(_entry(name, compress=not name.endswith(".webp")), data)
            listed.append({"path": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
        manifest = {"format": ARCHIVE_FORMAT, "session": dict(session), "files": listed}
        zf.writestr(_entry("manifest.json", compress=True), _dumps(manifest, indent=2))
    return _file_sha256(target)


def verify_archive(data: bytes, expected_sha256: str) -> dict[str, Any]:
    """Check bytes read back from the store: whole-file hash, then every file against the
    manifest. Returns the manifest; raises DependencyUnavailable on any mismatch (the store
    handed back something other than what was written, so the step is retried)."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        raise DependencyUnavailable(f"archive read back with sha256 {actual[:12]}…, expected {expected_sha256[:12]}…")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        names = set(zf.namelist()) - {"manifest.json"}
        listed = {f["path"] for f in manifest["files"]}
        if names != listed:
            raise DependencyUnavailable("archive files do not match its manifest")
        for entry in manifest["files"]:
            content = zf.read(entry["path"])
            if len(content) != entry["bytes"] or hashlib.sha256(content).hexdigest() != entry["sha256"]:
                raise DependencyUnavailable(f"archive entry {entry['path']} does not match its manifest")
    return manifest


def _dumps(value: Any, indent: int | None = None) -> bytes:
    return json.dumps(value, indent=indent, sort_keys=True, ensure_ascii=False, default=str).encode()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _session_meta(row: Mapping[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for name in _SESSION_FIELDS:
        value = row[name]
        if isinstance(value, str) and name in ("client", "viewport"):
            value = json.loads(value)
        meta[name] = value.isoformat() if hasattr(value, "isoformat") else value
    meta["session_id"], meta["org_id"] = str(row["session_id"]), str(row["org_id"])
    return meta


async def _files(res: TaskResources, session_id: uuid.UUID, analysis: Any) -> list[tuple[str, bytes]]:
    events = [as_event(r) for r in await repo.event_rows(res.pool, session_id)]
    lines = b"".join(_dumps(e) + b"\n" for e in events)
    files: list[tuple[str, bytes]] = [("events.jsonl", lines)]
    for shot in await repo.screenshot_rows(res.pool, session_id):
        if shot["status"] == "compressed" and shot["webp_key"]:
            files.append((f"screenshots/{shot['screenshot_id']}.webp", await res.store.get(shot["webp_key"])))
    files.append(("analysis.json", _dumps(json.loads(analysis) if isinstance(analysis, str) else analysis, indent=2)))
    return files


async def archive_session(res: TaskResources, session_id: uuid.UUID) -> dict[str, Any]:
    session = await repo.session_row(res.pool, session_id)
    if session is None:
        return {"status": "missing"}
    files = await _files(res, session_id, session["analysis"])
    files += await card_entries(res, session)  # card.json, contact-sheet.webp (actors/cards)
    key = archive_key(session["org_id"], session_id)
    with tempfile.TemporaryDirectory(prefix="tracemill-archive-") as tmp:
        path = Path(tmp) / "archive.zip"
        digest = build_archive(path, _session_meta(session), files)
        size = path.stat().st_size
        await res.store.put_file(key, path, "application/zip")
    verify_archive(await res.store.get(key), digest)
    await repo.record_archive(res.pool, session_id, key, digest, size)
    return {"status": "archived", "key": key, "bytes": size, "sha256": digest}
