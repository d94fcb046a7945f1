"""Quotas per organisation, checked in this one place: concurrent dataset and fine-tune jobs,
fine-tunes per UTC day, sessions per UTC day, stored screenshot bytes.

Defaults are settings (configs.limits.QuotaSettings); `org_quotas` rows override them per
organisation. Exceeding one raises QuotaExceeded naming it, before anything is started or
written. The counts live in PostgreSQL, so they hold across ingress replicas:

- counters (sessions per day, stored bytes) move by one conditional statement (`charge`), and
  a caller whose work then does not happen gives the amount back (`refund`);
- jobs are counted from their own tables inside `job_slot`, a transaction holding a per-
  organisation advisory lock in which the caller inserts its job row: two concurrent requests
  against a limit of 1 are serialised, and the second sees the first's row.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Literal

import asyncpg

from actors.errors import QuotaExceeded
from actors.storage import quotas_repo
from actors.storage.finetune_repo import TERMINAL as TERMINAL_FINETUNE
from configs.limits import QuotaName, QuotaSettings

__all__ = ["Charge", "charge", "job_slot", "refund"]

_RUNNING_TOTAL = date(1970, 1, 1)  # the period of a quota that never resets (stored bytes)
# How soon a refused caller might try again: a concurrent job may end within minutes; stored
# bytes need an operator (or a deletion) to change.
_RETRY_CONCURRENT_S = 30.0
_RETRY_STORED_S = 3600.0


@dataclass(frozen=True)
class Charge:
    """What `charge` took, so that `refund` gives back exactly that."""

    org_id: uuid.UUID
    quota: QuotaName
    period: date
    amount: int


def _period(quota: QuotaName, now: datetime) -> date:
    return now.date() if quota.endswith("_per_day") else _RUNNING_TOTAL


def _until_tomorrow_s(now: datetime) -> float:
    tomorrow = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), timezone.utc)
    return max(1.0, (tomorrow - now).total_seconds())


def _refusal(quota: QuotaName, limit: int, used: int, retry_after_s: float) -> QuotaExceeded:
    return QuotaExceeded(
        f"the organisation's quota {quota} ({limit}) is used up ({used}); nothing was started",
        retry_after_s,
        [{"quota": quota, "limit": limit, "used": used}],
    )


async def charge(pool: asyncpg.Pool, settings: QuotaSettings, org_id: uuid.UUID,
                 quota: Literal["sessions_per_day", "stored_bytes"], amount: int) -> Charge | None:
    """Count `amount` against a counter quota, or raise QuotaExceeded having counted nothing.
    None when quotas are off (nothing to refund)."""
    if not settings.enabled:
        return None
    now = datetime.now(timezone.utc)
    period = _period(quota, now)
    default = settings.default(quota)
    total = await quotas_repo.add_usage(pool, org_id, quota, period, amount, default)
    if total is None:
        limit = await quotas_repo.limit_of(pool, org_id, quota, default)
        used = await quotas_repo.usage(pool, org_id, quota, period)
        wait = _until_tomorrow_s(now) if quota.endswith("_per_day") else _RETRY_STORED_S
        raise _refusal(quota, limit, used, wait)
    return Charge(org_id, quota, period, amount)


async def refund(pool: asyncpg.Pool, taken: Charge | None) -> None:
    """Give back a charge whose work did not happen (a repeated request, a failed call)."""
    if taken is not None:
        await quotas_repo.subtract_usage(pool, taken.org_id, taken.quota, taken.period, taken.amount)


@asynccontextmanager
async def job_slot(pool: asyncpg.Pool, settings: QuotaSettings, org_id: uuid.UUID,
                   kind: Literal["dataset", "finetune"]) -> AsyncIterator[asyncpg.Connection]:
    """A transaction in which the caller inserts its job row, entered only if the organisation
    has room for one more job of `kind` (and, for a fine-tune, one more today)."""
    async with pool.acquire() as conn, conn.transaction():
        if settings.enabled:
            await quotas_repo.lock(conn, org_id, kind)
            if kind == "dataset":
                await _within(conn, settings, org_id, "concurrent_datasets",
                              await quotas_repo.active_datasets(conn, org_id), _RETRY_CONCURRENT_S)
            else:
                await _within(conn, settings, org_id, "concurrent_finetunes",
                              await quotas_repo.active_finetunes(conn, org_id, TERMINAL_FINETUNE),
                              _RETRY_CONCURRENT_S)
                await _within(conn, settings, org_id, "finetunes_per_day",
                              await quotas_repo.finetunes_today(conn, org_id),
                              _until_tomorrow_s(datetime.now(timezone.utc)))
        yield conn


async def _within(conn: asyncpg.Connection, settings: QuotaSettings, org_id: uuid.UUID, quota: QuotaName,
                  used: int, retry_after_s: float) -> None:
    limit = await quotas_repo.limit_of(conn, org_id, quota, settings.default(quota))
    if used + 1 > limit:
        raise _refusal(quota, limit, used, retry_after_s)
