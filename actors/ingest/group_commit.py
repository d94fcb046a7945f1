"""Group commit: many clients' event batches written in one transaction, acked after commit.

Waiting requests queue here for a few milliseconds; then one COPY into a per-connection
staging table and one `INSERT … SELECT … ON CONFLICT DO NOTHING RETURNING` store them all, the
session counters move in the same transaction, and only after COMMIT is each waiter answered.
A duplicate (already stored, or repeated within the batch) costs nothing but a count.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import asyncpg

from actors.crypto.event_fields import encrypt_staging_rows
from actors.crypto.keyring import Keyring
from actors.ingest.batcher import take_batch
from actors.ingest.rows import EncodedEvent
from actors.ingest.session_state import SessionState
from actors.storage.postgres import with_retries
from configs.settings import ShardSettings

__all__ = ["GroupCommitter", "prepare_staging"]

log = logging.getLogger(__name__)

_STAGING_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS interactions_staging ("
    " session_id uuid, seq bigint, type text, ts timestamptz, url text, target text, payload text"
    ") ON COMMIT DELETE ROWS"
)
_STAGING_COLUMNS = ("session_id", "seq", "type", "ts", "url", "target", "payload")
_INSERT_FROM_STAGING = (
    "INSERT INTO interactions (session_id, seq, type, ts, url, target, payload, session_month)"
    " SELECT st.session_id, st.seq, st.type, st.ts, st.url, st.target::jsonb, st.payload::jsonb,"
    " tracemill_session_month(s.created_at) FROM interactions_staging st"
    # A deleted (or purged) session takes nothing more, whichever replica or open stream sends it
    # (issue 18.3): a join on the sessions primary key, which also gives the partition key
    # (migration 0021: a session's events share its creation month, so the conflict target is
    # in effect (session_id, seq)).
    " JOIN sessions s ON s.session_id = st.session_id AND s.deleted_at IS NULL"
    " ON CONFLICT (session_id, seq, session_month) DO NOTHING RETURNING session_id, seq"
)
_UPDATE_SESSION = (
    "UPDATE sessions SET event_count = event_count + $2, duplicate_count = duplicate_count + $3,"
    " acked_through = $4, max_seq = greatest(max_seq, $5), updated_at = now()"
    " WHERE session_id = $1"
)

_ADD_AUDIT = (
    "INSERT INTO privacy_audit (session_id, source, kind, count) VALUES ($1, 'events', $2, $3)"
    " ON CONFLICT (session_id, source, kind)"
    " DO UPDATE SET count = privacy_audit.count + EXCLUDED.count, updated_at = now()"
)


async def prepare_staging(conn: asyncpg.Connection) -> None:
    """Pool `init` hook: every connection gets its own temporary staging table."""
    await conn.execute(_STAGING_DDL)


@dataclass
class _Waiter:
    state: SessionState
    events: Sequence[EncodedEvent]
    duplicates: int
    future: asyncio.Future[dict[str, Any]]
    redactions: dict[int, dict[str, int]]  # seq → {type: values redacted}, for the audit
    owned: list[int] = field(default_factory=list)  # seqs this waiter is the first to send


def _event_count(waiter: _Waiter) -> int:
    return len(waiter.events)


class GroupCommitter:
    """Owns the queue of waiting batches and the single task that commits them in order."""

    def __init__(self, pool: asyncpg.Pool, settings: ShardSettings, on_commit: Callable[[int, float], None] | None = None,
                 keyring: Keyring | None = None):
        self._pool = pool
        self._keyring = keyring  # encryption at rest: None when no KEK is configured
        self._settings = settings
        self._queue: deque[_Waiter] = deque()
        self._queued_events = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._on_commit = on_commit

    @property
    def queued_events(self) -> int:
        return self._queued_events

    def pending_for(self, session_id: uuid.UUID) -> list[asyncio.Future[dict[str, Any]]]:
        return [w.future for w in self._queue if w.state.session_id == session_id]

    async def submit(
        self,
        state: SessionState,
        events: Sequence[EncodedEvent],
        duplicates: int,
        redactions: dict[int, dict[str, int]] | None = None,
    ) -> dict[str, Any]:
        """Queue a batch of not-yet-stored (and already redacted) events; resolves with the
        ack once committed. `redactions` go to the privacy audit for the seqs stored."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Waiter(state, events, duplicates, future, redactions or {}))
        self._queued_events += len(events)
        self._wakeup.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if self._settings.commit_window_ms > 0:
                await asyncio.sleep(self._settings.commit_window_ms / 1000)
            while self._queue:
                batch, size = take_batch(self._queue, _event_count, self._settings.max_batch_events)
                self._queued_events -= size
                await self._commit_and_answer(batch)

    async def _commit_and_answer(self, batch: list[_Waiter]) -> None:
        rows = _claim_rows(batch)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            if self._keyring is not None:  # values leave the shard only encrypted (issue 18.5)
                rows = await encrypt_staging_rows(self._keyring, self._pool, rows)
            inserted, advanced = await with_retries(
                lambda: self._commit(batch, rows),
                attempts=self._settings.commit_attempts,
                what="event commit",
            )
        except Exception as exc:  # noqa: BLE001 - every waiter must hear about it
            log.warning("group commit of %d events failed: %s", len(rows), exc)
            for waiter in batch:
                if not waiter.future.done():
                    waiter.future.set_exception(exc)
            return
        states = {w.state.session_id: w.state for w in batch}
        for session_id, (acked, above) in advanced.items():
            states[session_id].apply(acked, above)
        for waiter in batch:
            accepted = sum(1 for seq in waiter.owned if (waiter.state.session_id, seq) in inserted)
            dup = waiter.duplicates + len(waiter.events) - accepted
            if not waiter.future.done():
                waiter.future.set_result(waiter.state.ack(accepted, dup))
        if self._on_commit is not None:
            self._on_commit(len(inserted), loop.time() - started)

    async def _commit(
        self, batch: list[_Waiter], rows: list[tuple[Any, ...]]
    ) -> tuple[set[tuple[uuid.UUID, int]], dict[uuid.UUID, tuple[int, set[int]]]]:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.copy_records_to_table("interactions_staging", records=rows, columns=_STAGING_COLUMNS)
            returned = await conn.fetch(_INSERT_FROM_STAGING)
            inserted = {(r["session_id"], r["seq"]) for r in returned}
            advanced = _advance_states(batch)
            updates = [
                (sid, counts[0], counts[1], advanced[sid][0], counts[2])
                for sid, counts in _session_counts(batch, inserted).items()
            ]
            await conn.executemany(_UPDATE_SESSION, updates)
            audit = _audit_rows(batch, inserted)
            if audit:
                await conn.executemany(_ADD_AUDIT, audit)
        return inserted, advanced


def _audit_rows(batch: list[_Waiter], inserted: set[tuple[uuid.UUID, int]]) -> list[tuple[Any, ...]]:
    """(session, type, count) for the values redacted from the events this commit stored."""
    totals: dict[tuple[uuid.UUID, str], int] = {}
    for waiter in batch:
        sid = waiter.state.session_id
        for seq, counts in waiter.redactions.items():
            if (sid, seq) in inserted and seq in waiter.owned:
                for kind, n in counts.items():
                    totals[(sid, kind)] = totals.get((sid, kind), 0) + n
    return [(sid, kind, n) for (sid, kind), n in sorted(totals.items(), key=lambda kv: (str(kv[0][0]), kv[0][1]))]


def _claim_rows(batch: list[_Waiter]) -> list[tuple[Any, ...]]:
    """Staging rows, each (session, seq) once: the first waiter to send a seq owns it."""
    seen: set[tuple[uuid.UUID, int]] = set()
    rows: list[tuple[Any, ...]] = []
    for waiter in batch:
        sid = waiter.state.session_id
        waiter.owned = []
        for ev in waiter.events:
            if (sid, ev.seq) in seen:
                continue
            seen.add((sid, ev.seq))
            waiter.owned.append(ev.seq)
            rows.append((sid, ev.seq, ev.type, ev.ts, ev.url, ev.target, ev.payload))
    return rows


def _advance_states(batch: list[_Waiter]) -> dict[uuid.UUID, tuple[int, set[int]]]:
    """Every claimed seq is stored once the transaction commits — inserted now or found
    already there (say, by an earlier attempt whose COMMIT reply was lost) — so all of them
    advance the state, not only those the INSERT returned."""
    states = {w.state.session_id: w.state for w in batch}
    by_session: dict[uuid.UUID, list[int]] = {sid: [] for sid in states}
    for waiter in batch:
        by_session[waiter.state.session_id].extend(waiter.owned)
    return {sid: states[sid].advanced(seqs) for sid, seqs in by_session.items()}


def _session_counts(
    batch: list[_Waiter], inserted: set[tuple[uuid.UUID, int]]
) -> dict[uuid.UUID, tuple[int, int, int]]:
    """Per session: (newly stored, duplicates, highest stored seq after this batch)."""
    counts: dict[uuid.UUID, list[int]] = {}
    for waiter in batch:
        sid = waiter.state.session_id
        entry = counts.setdefault(sid, [0, 0, waiter.state.max_seq])
        stored = [seq for seq in waiter.owned if (sid, seq) in inserted]
        entry[0] += len(stored)
        entry[1] += waiter.duplicates + len(waiter.events) - len(stored)
        if stored:
            entry[2] = max(entry[2], max(stored))
    return {sid: (c[0], c[1], c[2]) for sid, c in counts.items()}
