"""SQL of the quotas (migration 0005): per-organisation overrides, usage counters, and counts of
active jobs. actors.quotas decides; this module only reads and writes."""

from __future__ import annotations

import uuid
from datetime import date

import asyncpg

__all__ = ["active_datasets", "active_finetunes", "add_usage", "finetunes_today", "limit_of", "lock",
           "set_override", "subtract_usage", "usage"]

Conn = asyncpg.Connection | asyncpg.Pool

_LIMIT = "coalesce((SELECT max_value FROM org_quotas WHERE org_id = $1 AND quota = $2), $5)"


async def limit_of(conn: Conn, org_id: uuid.UUID, quota: str, default: int) -> int:
    value = await conn.fetchval("SELECT max_value FROM org_quotas WHERE org_id = $1 AND quota = $2",
                                org_id, quota)
    return default if value is None else int(value)


async def add_usage(conn: Conn, org_id: uuid.UUID, quota: str, period: date, amount: int,
                    default: int) -> int | None:
    """Add `amount` to the counter if the sum stays within the limit (the override, else
    `default`); the new total, or None when refused. One statement: the row lock taken by the
    conflict makes concurrent callers wait for each other, so they cannot both pass."""
    return await conn.fetchval(
        f"INSERT INTO quota_usage (org_id, quota, period, used) SELECT $1, $2, $3, $4 WHERE $4 <= {_LIMIT}"
        " ON CONFLICT (org_id, quota, period) DO UPDATE SET used = quota_usage.used + EXCLUDED.used"
        f" WHERE quota_usage.used + EXCLUDED.used <= {_LIMIT}"
        " RETURNING used",
        org_id, quota, period, amount, default,
    )


async def subtract_usage(conn: Conn, org_id: uuid.UUID, quota: str, period: date, amount: int) -> None:
    await conn.execute(
        "UPDATE quota_usage SET used = greatest(used - $4, 0) WHERE org_id = $1 AND quota = $2 AND period = $3",
        org_id, quota, period, amount,
    )


async def usage(conn: Conn, org_id: uuid.UUID, quota: str, period: date) -> int:
    value = await conn.fetchval(
        "SELECT used FROM quota_usage WHERE org_id = $1 AND quota = $2 AND period = $3", org_id, quota, period
    )
    return int(value or 0)


async def lock(conn: asyncpg.Connection, org_id: uuid.UUID, what: str) -> None:
    """Serialise the organisation's `what` checks until the transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"tracemill.quota.{what}.{org_id}")


async def active_datasets(conn: Conn, org_id: uuid.UUID) -> int:
    return int(await conn.fetchval(
        "SELECT count(*) FROM datasets WHERE org_id = $1 AND status IN ('queued', 'running')", org_id))


async def active_finetunes(conn: Conn, org_id: uuid.UUID, terminal: tuple[str, ...]) -> int:
    return int(await conn.fetchval(
        "SELECT count(*) FROM finetunes WHERE org_id = $1 AND status <> ALL($2::text[])", org_id, list(terminal)))


async def finetunes_today(conn: Conn, org_id: uuid.UUID) -> int:
    return int(await conn.fetchval(
        "SELECT count(*) FROM finetunes WHERE org_id = $1"
        " AND created_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'", org_id))


async def set_override(conn: Conn, org_id: uuid.UUID, quota: str, value: int | None) -> None:
    """Set one organisation's quota, or (None) return it to the deployment's default."""
    if value is None:
        await conn.execute("DELETE FROM org_quotas WHERE org_id = $1 AND quota = $2", org_id, quota)
        return
    await conn.execute(
        "INSERT INTO org_quotas (org_id, quota, max_value) VALUES ($1, $2, $3)"
        " ON CONFLICT (org_id, quota) DO UPDATE SET max_value = EXCLUDED.max_value, updated_at = now()",
        org_id, quota, value,
    )
