"""The batcher: one per cluster (a named Ray actor), so the vision and card lines of many
finalisations go to the Batch API together instead of a small batch per session.

A caller submits its lines (custom_id -> request body) for a kind and endpoint and waits. The
first submission of a (kind, endpoint) starts a timer of `batching.collect_s`; every line that
arrives before it fires (or until `max_lines`) goes into the same job, run by `run_batch`
(upload, create, poll, failed lines retried in a new batch). Each caller gets back only its own
lines' answers and failures, so it can send what is still failed the synchronous way.

Plain class, wrapped by `batcher()` as an async actor (like VisionService), so it is testable
without Ray. Its constructor takes picklable settings; clients and the pool are made in the
actor's process on first use.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
import ray

from actors import telemetry
from actors.batching.batch import BatchOutcome, run_batch
from actors.openai_client import OpenAIApi
from actors.storage.postgres import connect_pool
from configs.batching import BatchSettings
from configs.openai import OpenAISettings
from configs.settings import DatabaseSettings, TracemillSettings

__all__ = ["BATCHER_NAME", "BatchCollector", "batcher"]

log = logging.getLogger(__name__)
BATCHER_NAME = "model-batcher"


@dataclass
class _Waiting:
    lines: dict[str, dict[str, Any]]
    future: asyncio.Future[BatchOutcome]


class BatchCollector:
    def __init__(self, settings: BatchSettings, providers: Mapping[str, OpenAISettings],
                 database: DatabaseSettings | None = None) -> None:
        self._settings = settings
        self._providers = dict(providers)  # kind -> the settings its client is made from
        self._database = database
        self._apis: dict[str, OpenAIApi] = {}
        self._pool: asyncpg.Pool | None = None
        self._waiting: dict[tuple[str, str], list[_Waiting]] = {}
        self._timers: dict[tuple[str, str], asyncio.Task[None]] = {}
        self.jobs = 0

    async def submit(self, kind: str, endpoint: str, lines: dict[str, dict[str, Any]]) -> BatchOutcome:
        """Wait for `lines` to be answered in a batch; what is in `failed` was not."""
        if kind not in self._providers:
            raise ValueError(f"no provider settings for batched kind {kind!r}")
        key = (kind, endpoint)
        entry = _Waiting(dict(lines), asyncio.get_running_loop().create_future())
        queue = self._waiting.setdefault(key, [])
        queue.append(entry)
        queued = sum(len(w.lines) for w in queue)
        telemetry.set_model_backlog(kind, queued)
        if queued >= self._settings.max_lines:
            self._start(key, 0.0)
        elif key not in self._timers:
            self._start(key, self._settings.collect_s)
        return await entry.future

    def _start(self, key: tuple[str, str], delay: float) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None and delay == 0.0:
            timer.cancel()
        self._timers[key] = asyncio.get_running_loop().create_task(self._flush(key, delay))

    async def _flush(self, key: tuple[str, str], delay: float) -> None:
        await asyncio.sleep(delay)
        self._timers.pop(key, None)
        group = self._waiting.pop(key, [])
        telemetry.set_model_backlog(key[0], 0)
        if not group:
            return
        # Callers name their lines alone; the job's custom_id says whose line it is too.
        merged = {f"{i}/{cid}": body for i, w in enumerate(group) for cid, body in w.lines.items()}
        try:
            outcome = await run_batch(self._api(key[0]), key[0], key[1], merged, self._settings,
                                      await self._db())
        except Exception as exc:  # noqa: BLE001 - every caller hears of it and goes the synchronous way
            log.warning("batch of %d %s line(s) failed: %s", len(merged), key[0], exc)
            for w in group:
                if not w.future.done():
                    w.future.set_exception(exc)
            return
        self.jobs += 1
        for i, w in enumerate(group):
            if not w.future.done():
                w.future.set_result(_share(outcome, f"{i}/"))

    def _api(self, kind: str) -> OpenAIApi:
        if kind not in self._apis:
            self._apis[kind] = OpenAIApi(self._providers[kind], name=f"{kind} batch provider",
                                         gave_up_retry_after_s=60.0)
        return self._apis[kind]

    async def _db(self) -> asyncpg.Pool | None:
        if self._pool is None and self._database is not None:
            self._pool = await connect_pool(self._database, max_size=1)
        return self._pool

    async def aclose(self) -> None:
        for api in self._apis.values():
            await api.aclose()
        if self._pool is not None:
            await self._pool.close()


def _share(outcome: BatchOutcome, prefix: str) -> BatchOutcome:
    """One caller's part of a job's outcome: its lines under their own names, its tokens."""
    cut = len(prefix)
    mine = BatchOutcome(batch_ids=list(outcome.batch_ids))
    for cid, body in outcome.answers.items():
        if cid.startswith(prefix):
            mine.answers[cid[cut:]] = body
            usage = body.get("usage") or {}
            mine.tokens_in += int(usage.get("prompt_tokens") or 0)
            mine.tokens_out += int(usage.get("completion_tokens") or 0)
    mine.failed = {cid[cut:]: code for cid, code in outcome.failed.items() if cid.startswith(prefix)}
    mine.retried = {cid[cut:] for cid in outcome.retried if cid.startswith(prefix)}
    mine.retried_lines = len(mine.retried)
    return mine


def batcher(settings: TracemillSettings) -> Any:
    """The named batcher actor, created by whoever needs it first. Its name carries a digest of
    its settings, so a deployment (or a test) with other providers gets its own."""
    providers: dict[str, OpenAISettings] = {"vision": settings.processing.vision, "card": settings.cards}
    digest = hashlib.sha256(repr((settings.batching, providers, settings.database)).encode()).hexdigest()[:12]
    return ray.remote(BatchCollector).options(
        name=f"{BATCHER_NAME}-{digest}", namespace=settings.shards.namespace, lifetime="detached",
        get_if_exists=True, num_cpus=0.05, max_restarts=-1, max_concurrency=1000,
    ).remote(settings.batching, providers, settings.database)
