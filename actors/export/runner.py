"""Running one export (jobs/export.py, `tracemill export`): claim the row, write the ZIP to a
local file, upload it under a key of this run's own, then publish it by naming that key in the
row. A download reads only the published key, so a run killed midway, or two runs of one
export at once, never hand out a half-written ZIP; the run that loses removes its copy."""

from __future__ import annotations

import json
import logging
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from actors.errors import NotFound
from actors.export.builder import build
from actors.export.zipsink import ZipSink, file_sha256
from actors.storage import export_repo
from actors.storage.objectstore import ObjectStore
from actors.storage.recorder_data import export_prefix

__all__ = ["ExportResult", "run_export"]

log = logging.getLogger(__name__)


@dataclass
class ExportResult:
    export_id: str
    status: str
    object_key: str | None
    bytes: int
    sha256: str | None
    counts: dict[str, Any]
    seconds: float


def _result(row: Any, seconds: float) -> ExportResult:
    counts = row["counts"]
    return ExportResult(str(row["export_id"]), row["status"], row["object_key"], row["bytes"] or 0, row["sha256"],
                        json.loads(counts) if isinstance(counts, str) else (counts or {}), round(seconds, 3))


async def _write(conn: asyncpg.Connection, store: ObjectStore, row: Any, recorder: dict[str, Any],
                 tmp: Path) -> tuple[str, int, str, dict[str, Any]]:
    """The ZIP built in `tmp` and uploaded under this run's key: (key, size, sha256, counts)."""
    export_id = row["export_id"]
    path = tmp / f"{export_id}.zip"
    sink = ZipSink(path)
    try:
        manifest = await build(conn, store, sink, recorder, export_id=export_id,
                               progress=lambda p: export_repo.set_progress(conn, export_id, p))
    finally:
        sink.close()
    size, digest = file_sha256(path)
    key = f"{export_prefix(row['org_id'], row['recorder_id'])}{export_id}/{uuid.uuid4().hex}.zip"
    await store.put_file(key, path, "application/zip")
    return key, size, digest, manifest["counts"]


async def run_export(pool: asyncpg.Pool, store: ObjectStore, export_id: uuid.UUID, *,
                     tmp_dir: Path | None = None) -> ExportResult:
    """Build and publish the export; an export already ready is left as it is."""
    started = time.perf_counter()
    async with pool.acquire() as conn:
        had = await export_repo.claim(conn, export_id)
        if had is None:
            raise NotFound(f"no export {export_id}")
        row = await export_repo.export_row(conn, export_id)
        if had == "ready":
            log.info("export %s: ready already, nothing to do", export_id)
            return _result(row, time.perf_counter() - started)
        key = None
        try:
            recorder = await export_repo.live_recorder(conn, row["org_id"], row["workspace_id"], row["recorder_id"])
            if recorder is None:
                raise NotFound(f"recorder {row['recorder_id']} was deleted")
            with tempfile.TemporaryDirectory(prefix="tracemill-export-", dir=tmp_dir) as tmp:
                key, size, digest, counts = await _write(conn, store, row, dict(recorder), Path(tmp))
            if not await export_repo.publish(conn, export_id, object_key=key, size=size, sha256=digest,
                                             counts=counts):
                log.info("export %s: another run published first; removing this run's copy", export_id)
                await store.delete(key)
        except Exception as exc:
            if key is not None and (await export_repo.export_row(conn, export_id))["object_key"] != key:
                await store.delete(key)
            await export_repo.fail(conn, export_id, f"{type(exc).__name__}: {exc}")
            raise
        row = await export_repo.export_row(conn, export_id)
    result = _result(row, time.perf_counter() - started)
    log.info("export %s: %s, %d bytes, %s in %.2f s", export_id, result.status, result.bytes, result.counts,
             result.seconds)
    return result
