"""What a processing task needs inside its own worker process: a database connection and the
object store."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg

from actors.crypto import keyring
from actors.storage.objectstore import ObjectStore, make_object_store
from actors.storage.postgres import connect_pool
from configs.settings import TracemillSettings

__all__ = ["TaskResources", "task_resources"]


class TaskResources:
    def __init__(self, settings: TracemillSettings, pool: asyncpg.Pool, store: ObjectStore) -> None:
        self.settings = settings
        self.pool = pool
        self.store = store


@contextlib.asynccontextmanager
async def task_resources(settings: TracemillSettings) -> AsyncIterator[TaskResources]:
    """One small pool and one store per task run; a task is seconds long, so the ~5 ms of
    connecting is noise next to its work and nothing outlives the run."""
    keyring.install(settings.encryption)  # event readers open encrypted values with it (issue 18.5)
    pool = await connect_pool(settings.database, max_size=2)
    store = make_object_store(settings.object_store)
    try:
        yield TaskResources(settings, pool, store)
    finally:
        await store.close()
        await pool.close()
