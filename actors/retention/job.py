"""The retention job (issue 18.4): per workspace and data type, remove what is past its period.

* events: whole monthly partitions of `interactions` are dropped once every session with events
  in them is past its workspace's period; the rest (a younger workspace period, a session
  created in a month not yet droppable) are deleted session by session;
* screenshots: the objects (raw upload, painted WebP, contact sheet), then the rows;
* archives: the session's ZIP, then the key on the row;
* datasets: the files, then the row is withdrawn and the models trained on it flagged, as the
  deletion purge does;
* audit entries: deleted through the one path the append-only trigger allows (0021).

Session rows stay, with their counters, quality, analysis and card: trends and the dashboard
read only those (actors/storage/trends_repo.py, stats_repo.py). Each step marks what it removed
in the transaction that removes the rows, after the objects are gone, so a run killed anywhere
is finished by the next one, and a second run does nothing.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import asyncpg

from actors.accounts.audit import Actor, audit
from actors.deletion.purger import session_prefixes
from actors.storage import retention_repo as repo
from actors.storage.objectstore import ObjectStore
from configs.retention import DataType, RetentionSettings

__all__ = ["RetentionReport", "Stopped", "run_retention"]

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


class Stopped(Exception):
    """Raised inside the job where a test asked it to stop, as a run killed there would."""


@dataclass
class RetentionReport:
    dry_run: bool = False
    workspaces: int = 0
    partitions_created: list[str] = field(default_factory=list)
    partitions_dropped: list[str] = field(default_factory=list)
    events_sessions: int = 0      # sessions whose events were removed (partition or rows)
    events_rows: int = 0          # rows deleted one by one (a dropped partition's are not counted)
    screenshot_sessions: int = 0
    screenshot_rows: int = 0
    archives: int = 0
    datasets: int = 0
    models_flagged: int = 0
    audit_entries: int = 0
    objects: int = 0
    stopped: bool = False
    seconds: float = 0.0
    partitions_seconds: float = 0.0  # of `seconds`: creating and dropping partitions

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["seconds"] = round(self.seconds, 3)
        out["partitions_seconds"] = round(self.partitions_seconds, 3)
        return out


@dataclass
class _Run:
    conn: asyncpg.Connection
    store: ObjectStore
    settings: RetentionSettings
    report: RetentionReport
    dry_run: bool
    stop_after: str | None
    progress: Progress

    def stop_here(self, step: str) -> None:
        if self.stop_after == step:
            raise Stopped(step)


async def _delete_objects(run: _Run, keys: set[str]) -> None:
    for key in sorted(keys):
        await run.store.delete(key)
    run.report.objects += len(keys)


async def _partitions(run: _Run) -> None:
    """Create the months ahead, then drop the months whose every session is past its period."""
    if not run.dry_run:
        run.report.partitions_created = await repo.ensure_partitions(run.conn, run.settings.partitions_ahead)
    shortest = min([run.settings.defaults.events, *[w["events"] for w in await repo.workspaces(
        run.conn, run.settings.defaults)]])
    today = datetime.now(UTC).date()
    for name, month in await repo.events_partitions(run.conn):
        month_end = date(month.year + month.month // 12, month.month % 12 + 1, 1)
        # Sessions are placed by their creation month: none in a month that ended less than the
        # shortest period ago can be past it, so its rows are not even read.
        if (today - month_end).days < shortest:
            continue
        if not await repo.partition_past(run.conn, name, run.settings.defaults.events):
            continue
        if run.dry_run:
            run.report.partitions_dropped.append(name)
            continue
        try:
            run.report.events_sessions += await repo.drop_partition(run.conn, name)
        except asyncpg.LockNotAvailableError:
            run.progress(f"retention: {name} is busy; its sessions go row by row, the partition next run")
            continue
        run.report.partitions_dropped.append(name)
        run.progress(f"retention: dropped events partition {name}")
        run.stop_here("partition")


_COUNTER = {"events": "events_sessions", "screenshots": "screenshot_sessions", "archives": "archives"}


async def _sessions(run: _Run, data_type: DataType, ws: dict[str, Any]) -> int:
    """Events, screenshots or archives of the workspace's sessions past the period; sessions done."""
    done = 0
    while True:
        rows = await repo.sessions_due(run.conn, data_type, ws["workspace_id"], ws[data_type],
                                       10**9 if run.dry_run else run.settings.batch)
        if not rows:
            return done
        ids = [r["session_id"] for r in rows]
        done += len(ids)
        counter = _COUNTER[data_type]
        setattr(run.report, counter, getattr(run.report, counter) + len(ids))
        if run.dry_run:
            return done
        if data_type == "events":
            run.report.events_rows += await repo.expire_events(run.conn, ids)
        elif data_type == "screenshots":
            keys = set(await repo.screenshot_keys(run.conn, ids))
            # Objects the rows do not name (a contact sheet, an upload whose row was not written);
            # a session that never had a screenshot has none, and costs no listing.
            for r in (r for r in rows if r["screenshot_count"]):
                for prefix in session_prefixes(r["org_id"], r["session_id"]):
                    if prefix.startswith("archives/"):
                        continue  # the archive has its own period
                    keys.update(await run.store.list(prefix))
            await _delete_objects(run, keys)
            run.stop_here("screenshots")
            run.report.screenshot_rows += await repo.expire_screenshots(run.conn, ids)
        else:
            await _delete_objects(run, {r["archive_key"] for r in rows})
            run.stop_here("archives")
            await repo.expire_archives(run.conn, ids)
        run.stop_here(data_type)


async def _datasets(run: _Run, ws: dict[str, Any]) -> int:
    done = 0
    while True:
        due = await repo.datasets_due(run.conn, ws["workspace_id"], ws["datasets"],
                                      10**9 if run.dry_run else run.settings.batch)
        if not due:
            return done
        done += len(due)
        run.report.datasets += len(due)
        if run.dry_run:
            return done
        await _delete_objects(run, {k for d in due for k in d["keys"]})
        run.stop_here("datasets")
        run.report.models_flagged += await repo.expire_datasets(run.conn, [d["dataset_id"] for d in due])


async def _audit(run: _Run, workspace_id: uuid.UUID | None, days: int) -> int:
    if run.dry_run:
        found = await repo.count_audit(run.conn, workspace_id, days)
        run.report.audit_entries += found
        return found
    done = 0
    while gone := await repo.delete_audit(run.conn, workspace_id, days, run.settings.batch * 10):
        done += gone
        run.report.audit_entries += gone
        run.stop_here("audit")
    return done


async def _workspace(run: _Run, ws: dict[str, Any]) -> None:
    counts = {"events": await _sessions(run, "events", ws),
              "screenshots": await _sessions(run, "screenshots", ws),
              "archives": await _sessions(run, "archives", ws),
              "datasets": await _datasets(run, ws),
              "audit": await _audit(run, ws["workspace_id"], ws["audit"])}
    if any(counts.values()):
        verb = "would remove" if run.dry_run else "removed"
        run.progress(f"retention: workspace {ws['workspace_id']} {verb}: " +
                     ", ".join(f"{n} {t}" for t, n in counts.items()))
        if not run.dry_run:  # ids and counts only
            await audit(run.conn, "retention.run", Actor("system", "retention", ws["org_id"], ws["workspace_id"]),
                        target=str(ws["workspace_id"]), details={"sessions_" + t: n for t, n in counts.items()})


async def run_retention(pool: asyncpg.Pool, store: ObjectStore, settings: RetentionSettings, *,
                        dry_run: bool = False, stop_after: str | None = None,
                        progress: Progress | None = None) -> RetentionReport:
    """One pass over every workspace. `dry_run` counts what would go and changes nothing;
    `stop_after` (a step name: partition, events, screenshots, archives, datasets, audit) stops
    the run there as a run killed there would (the tests resume it)."""
    report, started = RetentionReport(dry_run=dry_run), time.perf_counter()
    async with pool.acquire() as conn:
        run = _Run(conn, store, settings, report, dry_run, stop_after, progress or log.info)
        try:
            await _partitions(run)
            report.partitions_seconds = time.perf_counter() - started
            spaces = await repo.workspaces(conn, settings.defaults)
            for ws in spaces:
                await _workspace(run, ws)
                report.workspaces += 1
            await _audit(run, None, settings.defaults.audit)
        except Stopped:
            report.stopped = True
    report.seconds = time.perf_counter() - started
    run.progress(
        f"retention{' (dry run)' if dry_run else ''}: {report.workspaces} workspaces;"
        f" events of {report.events_sessions} sessions ({report.events_rows} rows one by one,"
        f" {len(report.partitions_dropped)} partitions dropped), screenshots of {report.screenshot_sessions}"
        f" sessions, {report.archives} archives, {report.datasets} datasets ({report.models_flagged} models"
        f" flagged), {report.audit_entries} audit entries, {report.objects} objects in {report.seconds:.2f} s")
    return report
