"""PostgreSQL access: pools, transient-fault classification, retries, migrations.

Every write path in tracemill is idempotent (primary keys, ON CONFLICT DO NOTHING), so a
transaction that failed on a transient fault is simply run again after a backoff.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
from importlib import resources
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

import asyncpg

from actors.errors import DependencyUnavailable, MigrationFailed
from configs.settings import DatabaseSettings

__all__ = ["connect_pool", "is_transient", "with_retries", "apply_migrations", "ping", "json_dumps"]

log = logging.getLogger(__name__)
T = TypeVar("T")

# A migration runs under this advisory lock so that two starters never race each other.
_MIGRATION_LOCK_ID = 0x7472_6163  # "trac"

_TRANSIENT_SQLSTATE_CLASSES = ("08", "53", "57")  # connection, resources, operator intervention


def is_transient(exc: BaseException) -> bool:
    """True for faults that another attempt may not hit: the server restarting, a dropped socket."""
    if isinstance(exc, (OSError, asyncio.TimeoutError, asyncpg.InterfaceError)):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
        return state[:2] in _TRANSIENT_SQLSTATE_CLASSES or state == "40001"
    return False


async def with_retries(
    op: Callable[[], Awaitable[T]],
    *,
    attempts: int,
    what: str,
    base_delay_s: float = 0.05,
) -> T:
    """Run `op`, retrying transient faults with jittered exponential backoff.

    When the last attempt fails, the caller gets DependencyUnavailable: the client is told to
    come back later, and nothing was committed.
    """
    for attempt in range(1, attempts + 1):
        try:
            return await op()
        except Exception as exc:  # noqa: BLE001 - classified right below
            if not is_transient(exc):
                raise
            if attempt == attempts:
                log.warning("%s failed after %d attempts: %s", what, attempts, type(exc).__name__)
                raise DependencyUnavailable(
                    f"database unavailable during {what}", retry_after_s=1.0
                ) from exc
            delay = base_delay_s * (2 ** (attempt - 1)) * (0.5 + random.random())
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


async def connect_pool(
    settings: DatabaseSettings,
    *,
    max_size: int | None = None,
    init: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
) -> asyncpg.Pool:
    """A pool that may be created while the database is down: connections open lazily."""
    return await asyncpg.create_pool(
        dsn=settings.url.get_secret_value(),
        min_size=0,
        max_size=max_size or settings.pool_max,
        timeout=settings.connect_timeout_s,
        command_timeout=settings.command_timeout_s,
        init=init,
        # Prepared statements are cached per connection; keep the cache for hot queries.
        statement_cache_size=256,
    )


async def ping(pool: asyncpg.Pool, timeout_s: float = 2.0) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            await pool.fetchval("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        raise DependencyUnavailable(
            f"database unavailable: {type(exc).__name__}", retry_after_s=2.0
        ) from exc


def _migration_files(folder: Path | None = None) -> list[tuple[int, str, str]]:
    source: Any = folder if folder is not None else resources.files("actors.storage") / "migrations"
    found: list[tuple[int, str, str]] = []
    for entry in source.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text()))
    found.sort()
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        raise MigrationFailed("two migration files share a version number")
    return found


async def apply_migrations(dsn: str, folder: Path | None = None) -> list[str]:
    """Apply the pending migrations in order, each in its own transaction; return their names.

    Re-running is a no-op. A migration that fails is rolled back and raises MigrationFailed
    naming the file; an already-applied file whose text changed is refused the same way.
    `folder` replaces the packaged migrations (tests use it).
    """
    conn: asyncpg.Connection = await asyncpg.connect(dsn)
    applied_now: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_ID)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"]: r for r in await conn.fetch("SELECT * FROM schema_migrations")}
        for version, name, sql in _migration_files(folder):
            checksum = hashlib.sha256(sql.encode()).hexdigest()
            if version in done:
                if done[version]["checksum"] != checksum:
                    raise MigrationFailed(f"migration {name} changed after it was applied")
                continue
            await _apply_one(conn, version, name, sql, checksum)
            applied_now.append(name)
    finally:
        await conn.close()
    return applied_now


async def _apply_one(conn: asyncpg.Connection, version: int, name: str, sql: str, checksum: str) -> None:
    try:
        async with conn.transaction():
            await conn.execute(sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                version,
                name,
                checksum,
            )
    except asyncpg.PostgresError as exc:
        raise MigrationFailed(f"migration {name} failed and was rolled back: {exc}") from None
    log.info("applied migration %s", name)


def json_dumps(value: Any) -> str:
    """Compact JSON for jsonb parameters (asyncpg passes jsonb as text)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
