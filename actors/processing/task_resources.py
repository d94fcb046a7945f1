"""What a processing task needs inside its own worker process: a database connection, the
object store, and the stored events turned back into PROTOCOL.md event dicts."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any

import asyncpg
from pydantic_core import from_json

from actors.storage.objectstore import ObjectStore, make_object_store
from actors.storage.postgres import connect_pool
from configs.settings import TracemillSettings

__all__ = ["TaskResources", "as_event", "epoch_ms", "jsonb", "task_resources"]


class TaskResources:
    def __init__(self, settings: TracemillSettings, pool: asyncpg.Pool, store: ObjectStore) -> None:
        self.settings = settings
        self.pool = pool
        self.store = store


@contextlib.asynccontextmanager
async def task_resources(settings: TracemillSettings) -> AsyncIterator[TaskResources]:
    """One small pool and one store per task run; a task is seconds long, so the ~5 ms of
    connecting is noise next to its work and nothing outlives the run."""
    pool = await connect_pool(settings.database, max_size=2)
    store = make_object_store(settings.object_store)
    try:
        yield TaskResources(settings, pool, store)
    finally:
        await store.close()
        await pool.close()


def jsonb(value: Any) -> Any:
    """A jsonb column's value: asyncpg hands jsonb over as text (no codec is registered)."""
    return json.loads(value) if isinstance(value, str) else value


def epoch_ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


def as_event(row: Mapping[str, Any]) -> dict[str, Any]:
    """An `interactions` row (target and payload as JSON text) as the event dict clients sent,
    after redaction: seq, type, ts (epoch ms), url, target, then the type's own fields."""
    event: dict[str, Any] = {"seq": row["seq"], "type": row["type"], "ts": epoch_ms(row["ts"])}
    if row["url"] is not None:
        event["url"] = row["url"]
    if row["target"] is not None:
        event["target"] = from_json(row["target"])
    event.update(from_json(row["payload"]))
    return event
