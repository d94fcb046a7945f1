"""The daily schedule (issue 18.4): a small detached actor that runs the retention job and then
the deletion purge every `schedule.period_s` (default a day).

When the last run was is kept in PostgreSQL (`scheduled_runs`, migration 0021), not in the
actor: a cluster that was down when a run was due runs it as soon as the scheduler starts again
(`tracemill up` starts it), and a run that failed or was killed midway is retried after
`schedule.retry_s`. Both jobs are resumable and harmless twice, so a run repeated after a crash
only finishes what was left. A PostgreSQL advisory lock keeps two schedulers (two deployments
of one database) from running at once. The actor reads the deployment's settings at each run
(actors.settings_registry), so a redeploy with other periods applies from the next run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import ray

from configs.retention import ScheduleSettings

__all__ = ["RUN_NAME", "SCHEDULER_NAME", "Scheduler", "ensure_scheduler", "seconds_until_due"]

log = logging.getLogger(__name__)

SCHEDULER_NAME = "tracemill-scheduler"
RUN_NAME = "daily"
_LOCK_ID = 0x7472_6D72  # pg_try_advisory_lock key of the scheduled run ("trmr")
_MAX_SLEEP_S = 600  # look again at least this often: a manual change of scheduled_runs is seen


def seconds_until_due(row: Any, schedule: ScheduleSettings, now: float) -> float:
    """Seconds until the next run is due (0 or less: due now), from the last run's row: never
    run → now; the last attempt unfinished (failed, killed) → `retry_s` after it started;
    else `period_s` after the last successful run started."""
    if row is None or row["started_at"] is None:
        return 0.0
    started = row["started_at"].timestamp()
    finished = row["finished_at"].timestamp() if row["finished_at"] is not None else None
    if finished is None or finished < started:
        return started + schedule.retry_s - now
    return started + schedule.period_s - now


async def _run_jobs(schedule: ScheduleSettings) -> dict[str, Any]:
    """One scheduled run: retention, then the purge, with the deployment's settings."""
    from actors.deletion.purger import purge
    from actors.retention.job import run_retention
    from actors.settings_registry import published_settings
    from actors.storage.objectstore import make_object_store
    from actors.storage.postgres import connect_pool

    settings = published_settings()
    pool = await connect_pool(settings.database, max_size=2)
    store = make_object_store(settings.object_store)
    report: dict[str, Any] = {}
    try:
        async with pool.acquire() as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _LOCK_ID):
                return {"skipped": "another scheduler is running"}
            try:
                row = await conn.fetchrow("SELECT started_at, finished_at FROM scheduled_runs WHERE name = $1",
                                          RUN_NAME)
                if seconds_until_due(row, schedule, time.time()) > 0:
                    return {"skipped": "not due"}  # another scheduler ran it meanwhile
                await conn.execute(
                    "INSERT INTO scheduled_runs (name, started_at) VALUES ($1, now())"
                    " ON CONFLICT (name) DO UPDATE SET started_at = now()", RUN_NAME)
                if "retention" in schedule.jobs:
                    report["retention"] = (await run_retention(pool, store, settings.retention)).as_dict()
                if "purge" in schedule.jobs:
                    report["purge"] = (await purge(pool, store, settings.deletion)).as_dict()
                await conn.execute("UPDATE scheduled_runs SET finished_at = now(), report = $2::jsonb"
                                   " WHERE name = $1", RUN_NAME, json.dumps(report))
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)
    finally:
        await store.close()
        await pool.close()
    return report


async def _due_in(schedule: ScheduleSettings) -> float:
    from actors.settings_registry import published_settings
    from actors.storage.postgres import connect_pool

    pool = await connect_pool(published_settings().database, max_size=1)
    try:
        row = await pool.fetchrow("SELECT started_at, finished_at FROM scheduled_runs WHERE name = $1", RUN_NAME)
    finally:
        await pool.close()
    return seconds_until_due(row, schedule, time.time())


@ray.remote(num_cpus=0, max_restarts=-1)
class Scheduler:
    """Sleeps until the next run is due, runs it, and again; `run_if_due` runs one check now."""

    def __init__(self, schedule: dict[str, Any]):
        self.schedule = ScheduleSettings.model_validate(schedule)
        self._loop: asyncio.Task[None] | None = None
        self.last: dict[str, Any] | None = None
        # Queued behind __init__: a restarted actor (max_restarts) starts its loop by itself.
        ray.get_runtime_context().current_actor.start.remote()

    async def start(self) -> bool:
        """Start the loop, once (called from __init__, and harmless again)."""
        if self._loop is None or self._loop.done():
            self._loop = asyncio.get_running_loop().create_task(self._forever())
        return True

    async def run_if_due(self) -> dict[str, Any] | None:
        """Run now if a run is due (the loop does this when it wakes); the report, else None."""
        if await _due_in(self.schedule) > 0:
            return None
        self.last = await _run_jobs(self.schedule)
        return self.last

    async def _forever(self) -> None:
        while True:
            try:
                wait = await _due_in(self.schedule)
                if wait <= 0:
                    self.last = await _run_jobs(self.schedule)
                    log.info("scheduled run: %s", self.last)
                    continue
            except Exception:  # noqa: BLE001 - a failed run is retried after retry_s; the loop lives on
                log.exception("scheduled run failed; retrying in %d s", self.schedule.retry_s)
                wait = self.schedule.retry_s
            await asyncio.sleep(min(max(wait, 1.0), _MAX_SLEEP_S))


def ensure_scheduler(schedule: ScheduleSettings, namespace: str = "tracemill") -> Any:
    """Start the detached scheduler (or replace one started with other settings); needs a
    connected Ray. None when the schedule is disabled (an existing scheduler is removed)."""
    try:
        old = ray.get_actor(SCHEDULER_NAME, namespace=namespace)
    except ValueError:
        old = None
    if old is not None:
        ray.kill(old, no_restart=True)
    if not schedule.enabled:
        return None
    for _ in range(50):  # the killed actor's name is released asynchronously
        try:
            actor = Scheduler.options(name=SCHEDULER_NAME, namespace=namespace, lifetime="detached").remote(
                schedule.model_dump(mode="json"))
            break
        except ValueError:
            time.sleep(0.1)
    else:
        raise RuntimeError(f"the name {SCHEDULER_NAME} stayed taken")
    ray.get(actor.start.remote())
    return actor
