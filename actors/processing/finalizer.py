"""Per-shard orchestration: screenshots compressed as they arrive, sessions finalised when
finished, and whatever a restart interrupted picked up again.

Finalisation is a row in PostgreSQL, not a coroutine: `sessions.finalize_stage` says which
stage comes next (screenshots → vision → analysis → archive → done) and every stage is
idempotent, so a shard (or the whole cluster) that restarts mid-way runs the interrupted stage
again and carries on. A failing stage is retried with backoff; after
`finalize_attempts` failures in a row the session ends `failed` with the reason.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import ray

from actors import telemetry
from actors.errors import TracemillError
from actors.cards.task import cards_task
from actors.logs import current_request_id
from actors.processing.screenshots import near_duplicates
from actors.processing.tasks import (
    analysis_task,
    archive_task,
    compress_task,
    vision_task,
)
from actors.storage import processing_repo as repo
from configs.settings import TracemillSettings

__all__ = ["Finalizer", "describe_failure"]

log = logging.getLogger(__name__)
_STAGES = ("screenshots", "vision", "analysis", "cards", "archive", "done")


def describe_failure(exc: BaseException) -> str:
    """A short reason for the session row and the log: our errors' messages carry no event
    values; anything else is named by type only."""
    cause = exc.cause if isinstance(exc, ray.exceptions.RayTaskError) else exc  # type: ignore[attr-defined]
    if isinstance(cause, TracemillError):
        return f"{type(cause).__name__}: {cause}"
    return type(cause).__name__


class Finalizer:
    def __init__(self, settings: TracemillSettings, db: Callable[[], Awaitable[asyncpg.Pool]],
                 owns: Callable[[uuid.UUID], bool]) -> None:
        self._settings = settings
        self._proc = settings.processing
        self._db = db
        self._owns = owns
        self._settings_ref: Any = None
        self._shots: dict[tuple[uuid.UUID, str], Any] = {}  # in-flight compress task refs
        self._waiting: dict[uuid.UUID, dict[str, int]] = {}  # shots waiting for their events
        self._running: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._limit = asyncio.Semaphore(self._proc.max_concurrent_finalizations)
        self._sweeper: asyncio.Task[None] | None = None

    # -- screenshots as they arrive ------------------------------------------------------

    def screenshot_arrived(self, session_id: uuid.UUID, screenshot_id: str, seq: int | None, acked_through: int) -> None:
        """Compress now if the events the frame shows are stored (they say what to paint
        over); otherwise once they are. A frame with no seq waits for the finish."""
        if seq is not None and seq <= acked_through:
            self._compress(session_id, screenshot_id)
        elif seq is not None:
            self._waiting.setdefault(session_id, {})[screenshot_id] = seq

    def events_acked(self, session_id: uuid.UUID, acked_through: int) -> None:
        waiting = self._waiting.get(session_id)
        if not waiting:
            return
        for screenshot_id, seq in list(waiting.items()):
            if seq <= acked_through:
                del waiting[screenshot_id]
                self._compress(session_id, screenshot_id)
        if not waiting:
            del self._waiting[session_id]

    def _compress(self, session_id: uuid.UUID, screenshot_id: str) -> Any:
        key = (session_id, screenshot_id)
        ref = self._shots.get(key)
        if ref is None:
            options = {"num_cpus": self._proc.compress_num_cpus}
            ref = compress_task.options(**options).remote(
                self._settings_obj(), session_id, screenshot_id, current_request_id()
            )
            self._shots[key] = ref
            asyncio.get_running_loop().create_task(self._forget(key, ref))
        return ref

    async def _forget(self, key: tuple[uuid.UUID, str], ref: Any) -> None:
        try:
            await ref
        except Exception as exc:  # noqa: BLE001 - finalisation runs it again and counts it
            log.warning("screenshot compression failed (will be retried at finalisation): %s", describe_failure(exc))
        finally:
            self._shots.pop(key, None)

    def _settings_obj(self) -> Any:
        # Put once: every task gets a reference instead of its own pickled copy.
        if self._settings_ref is None:
            self._settings_ref = ray.put(self._settings)
        return self._settings_ref

    # -- finalisation --------------------------------------------------------------------

    def start(self, session_id: uuid.UUID) -> None:
        task = self._running.get(session_id)
        if task is None or task.done():
            self._running[session_id] = asyncio.get_running_loop().create_task(self._finalize(session_id))
            telemetry.set_finalizations_running(self.running())

    def running(self) -> int:
        return sum(1 for t in self._running.values() if not t.done())

    async def _finalize(self, session_id: uuid.UUID) -> None:
        try:
            async with self._limit:
                await self._advance(session_id)
        except Exception as exc:  # noqa: BLE001 - the sweep tries again later
            log.warning("finalisation of session %s stopped: %s", session_id, describe_failure(exc))
        finally:
            self._running.pop(session_id, None)
            self._waiting.pop(session_id, None)
            telemetry.set_finalizations_running(self.running())

    async def _advance(self, session_id: uuid.UUID) -> None:
        pool = await self._db()
        while True:
            row = await repo.session_row(pool, session_id)
            if row is None or row["status"] != "finalizing":
                return
            stage = row["finalize_stage"] or "screenshots"
            try:
                following = await self._run_stage(stage, session_id)
            except Exception as exc:  # noqa: BLE001 - counted, then retried or failed
                reason = f"{stage}: {describe_failure(exc)}"
                failures = await repo.claim_finalize_attempt(pool, session_id, reason)
                log.warning("finalisation of session %s failed at %s (%d): %s", session_id, stage, failures, reason)
                if failures >= self._proc.finalize_attempts:
                    await repo.mark_failed(pool, session_id, reason)
                    telemetry.record_finalization("failed")
                    return
                await asyncio.sleep(self._proc.finalize_backoff_s * 2 ** (failures - 1))
                continue
            if following == "done":
                status = await repo.finish_finalization(pool, session_id)
                log.info("session %s finalised: %s", session_id, status)
                if status is not None:
                    telemetry.record_finalization(status)
                return
            await repo.set_stage(pool, session_id, following)

    async def _run_stage(self, stage: str, session_id: uuid.UUID) -> str:
        settings, request_id = self._settings_obj(), current_request_id()
        light = {"num_cpus": self._proc.analysis_num_cpus}
        log.info("session %s: finalisation stage %s", session_id, stage)
        if stage == "screenshots":
            await self._compress_all(session_id)
        elif stage == "vision":
            await vision_task.options(**light).remote(settings, session_id, request_id)
        elif stage == "analysis":
            await analysis_task.options(**light).remote(settings, session_id, request_id)
        elif stage == "cards":  # title, caption, contact sheet, sentiment (actors/cards)
            await cards_task.options(**light).remote(settings, session_id, request_id)
        elif stage == "archive":
            await archive_task.options(**light).remote(settings, session_id, request_id)
        return _STAGES[_STAGES.index(stage) + 1]

    async def _compress_all(self, session_id: uuid.UUID) -> None:
        pool = await self._db()
        self._waiting.pop(session_id, None)
        pending = await repo.pending_screenshots(pool, session_id)
        await asyncio.gather(*(self._compress(session_id, sid) for sid in pending))
        rows = await repo.screenshot_rows(pool, session_id)
        await repo.set_duplicates(pool, session_id, near_duplicates(rows, self._proc.near_duplicate_bits))

    # -- the sweep -----------------------------------------------------------------------

    def ensure_sweeping(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception as exc:  # noqa: BLE001 - the next sweep tries again
                log.warning("finalisation sweep failed: %s", describe_failure(exc))
            await asyncio.sleep(self._proc.sweep_interval_s)

    async def sweep(self) -> int:
        """Start every unfinished finalisation of this shard's sessions; returns how many."""
        pool = await self._db()
        started = 0
        for session_id in await repo.pending_finalizations(pool):
            if self._owns(session_id) and session_id not in self._running:
                self.start(session_id)
                started += 1
        return started
