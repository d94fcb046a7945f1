"""Helpers on the test stack (cluster.local.LocalStack) usable from any test module."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from actors import auth

__all__ = ["make_key", "read_object", "run_db", "write_object"]


def run_db(stack: Any, query: str, *args: Any) -> list[asyncpg.Record]:
    """Run one query against the stack's database from synchronous test code."""

    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(stack.settings.database.url.get_secret_value())
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    return asyncio.run(go())


def make_key(stack: Any, scopes: list[str], org_id: Any = auth.DEFAULT_ORG_ID) -> str:
    async def go() -> str:
        pool = await asyncpg.create_pool(stack.settings.database.url.get_secret_value(), min_size=0, max_size=1)
        try:
            return (await auth.create_key(pool, scopes=scopes, org_id=org_id, name="test",
                                          pepper=auth.pepper_of(stack.settings.auth)))[1]
        finally:
            await pool.close()

    return asyncio.run(go())


def write_object(stack: Any, key: str, data: bytes) -> None:
    """Put an object straight into the stack's object store, behind the API's back."""
    from actors.storage.objectstore import make_object_store

    async def go() -> None:
        store = make_object_store(stack.settings.object_store)
        try:
            await store.put(key, data)
        finally:
            await store.close()

    asyncio.run(go())


def read_object(stack: Any, key: str) -> bytes:
    """An object from the stack's object store (local directory or S3)."""
    from actors.storage.objectstore import make_object_store

    async def go() -> bytes:
        store = make_object_store(stack.settings.object_store)
        try:
            return await store.get(key)
        finally:
            await store.close()

    return asyncio.run(go())
