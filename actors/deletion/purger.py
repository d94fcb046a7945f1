"""The purge: remove deleted sessions (past the grace period) from PostgreSQL, the object store
and the vision cache, withdraw the datasets that used them and flag their models.

Each session goes through steps that can each be repeated (actors/storage/deletion_repo.py):
tombstone, rows, objects, stamp. A purge killed anywhere is finished by the next run: it first
completes the tombstones left unstamped, then takes new due sessions. Objects are removed by
the keys the rows named (kept in the tombstone) and by the session's prefixes, so objects
written after the rows were read (a late archive, a contact sheet) go too.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from actors.accounts.audit import Actor, audit
from actors.storage import deletion_repo
from actors.storage.objectstore import ObjectStore
from actors.storage.recorder_data import export_prefix, session_prefixes
from configs.deletion import DeletionSettings

__all__ = ["PurgeReport", "purge", "session_prefixes"]

log = logging.getLogger(__name__)


@dataclass
class PurgeReport:
    sessions: int = 0
    objects: int = 0
    datasets_withdrawn: int = 0
    models_flagged: int = 0
    recorders: int = 0
    seconds: float = 0.0
    session_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"sessions": self.sessions, "objects": self.objects, "datasets_withdrawn": self.datasets_withdrawn,
                "models_flagged": self.models_flagged, "recorders": self.recorders,
                "seconds": round(self.seconds, 3)}


async def _objects(store: ObjectStore, stone: Any) -> int:
    keys = set(stone["object_keys"])
    for prefix in session_prefixes(stone["org_id"], stone["session_id"]):
        keys.update(await store.list(prefix))
    for key in sorted(keys):
        await store.delete(key)
    return len(keys)


async def _prefix(store: ObjectStore, prefix: str) -> int:
    keys = await store.list(prefix)
    for key in keys:
        await store.delete(key)
    return len(keys)


async def _exports(conn: asyncpg.Connection, store: ObjectStore, stone: Any) -> int:
    """A recorder's export ZIPs may hold the session: removed, their rows marked (objects first,
    so a purge killed between the two finds the rows still pointing at what is left)."""
    if stone["recorder_id"] is None:
        return 0
    removed = await _prefix(store, export_prefix(stone["org_id"], stone["recorder_id"]))
    await deletion_repo.withdraw_exports(conn, stone["recorder_id"])
    return removed


async def _one(conn: asyncpg.Connection, store: ObjectStore, session_id: uuid.UUID, report: PurgeReport,
               *, stop_after: str | None = None) -> bool:
    """Purge one session from wherever it stopped; False when `stop_after` cut it short."""
    stone = await deletion_repo.plan_purge(conn, session_id)
    if stone is None:
        return True  # neither deleted nor tombstoned: nothing to purge
    if stop_after == "plan":
        return False
    if not stone["rows_done"]:
        counts = await deletion_repo.delete_rows(conn, session_id, list(stone["image_sha256"]))
        report.datasets_withdrawn += counts["datasets"]
        report.models_flagged += counts["models"]
        stone = await deletion_repo.plan_purge(conn, session_id)
        assert stone is not None
    if stop_after == "rows":
        return False
    report.objects += await _objects(store, stone)
    report.objects += await _exports(conn, store, stone)
    # Ids and counts only: what was recorded is gone, and the log must not keep it either.
    await audit(conn, "data.purge", Actor("system", "purge", stone["org_id"], stone["workspace_id"]),
                target=str(session_id), details={"objects": len(stone["object_keys"])})
    await deletion_repo.finish(conn, session_id)
    report.sessions += 1
    report.session_ids.append(str(session_id))
    return True


async def purge(pool: asyncpg.Pool, store: ObjectStore, settings: DeletionSettings, *,
                stop_after: str | None = None) -> PurgeReport:
    """Purge everything due. `stop_after` ("plan" or "rows") stops after that step of the first
    session, as a purge killed there would (the tests resume it)."""
    report, started = PurgeReport(), time.perf_counter()
    async with pool.acquire() as conn:
        while True:
            stones = await deletion_repo.unfinished(conn, settings.batch)
            todo = [s["session_id"] for s in stones]
            if not todo:
                todo = await deletion_repo.due_sessions(conn, settings.grace_period_s, settings.batch)
            if not todo:
                break
            for session_id in todo:
                if not await _one(conn, store, session_id, report, stop_after=stop_after):
                    report.seconds = time.perf_counter() - started
                    return report
        for due in await deletion_repo.due_recorders(conn, settings.grace_period_s):
            report.objects += await _prefix(store, export_prefix(due["org_id"], due["recorder_id"]))
        report.recorders = await deletion_repo.purge_recorders(conn, settings.grace_period_s)
    report.seconds = time.perf_counter() - started
    log.info("purge: %d sessions, %d objects, %d datasets withdrawn, %d models flagged, %d recorders in %.2f s",
             report.sessions, report.objects, report.datasets_withdrawn, report.models_flagged, report.recorders,
             report.seconds)
    return report
