"""A session shard: one async actor hosting many sessions (DESIGN.md decision 1).

The shard is the single writer for the sessions that hash to it, which is what lets it ack
from memory: it knows what it has committed. After a restart it knows nothing, and rebuilds
each session from PostgreSQL on first touch.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
import zlib
from collections import OrderedDict
from typing import Any, Awaitable, Callable, Literal, Sequence, TypeVar, get_args

import asyncpg

from actors import telemetry
from actors.errors import Conflict, DependencyUnavailable, NotFound, Overloaded, SessionClosed, TracemillError
from actors.crypto import keyring
from actors.ingest.admission import AdmissionControl
from actors.ingest.rows import EncodedEvent
from actors.ingest.group_commit import GroupCommitter, prepare_staging
from actors.logs import bound_request, setup_logging
from actors.privacy.redact import Redactor
from actors.privacy.write_path import RedactedBatch, redact_batch, redact_session
from actors.processing.finalizer import Finalizer
from actors.ingest.session_state import SessionState
from actors.storage import sessions_repo
from actors.storage.postgres import connect_pool, with_retries
from configs.settings import TracemillSettings

__all__ = ["SessionShard", "ShardCall", "shard_index"]

log = logging.getLogger(__name__)
T = TypeVar("T")

# Finished sessions are forgotten first; this bounds a long-lived shard's memory.
_MAX_CACHED_SESSIONS = 50_000
# Queued events with no commit finishing for this long mean the shard is stuck, not busy: a
# commit of the largest batch takes well under a second here.
_STALLED_S = 30.0

# The methods an ingress reaches through `SessionShard.call`, with the caller's request id.
ShardCall = Literal["create_session", "ingest", "finish", "check_recording", "register_screenshot", "check_health"]
_CALLS = frozenset(get_args(ShardCall))


def shard_index(session_id: uuid.UUID, count: int) -> int:
    # crc32 rather than hash(): Python's str/bytes hash is salted per process.
    return zlib.crc32(session_id.bytes) % count


class SessionShard:
    def __init__(self, index: int, settings: TracemillSettings):
        setup_logging(f"shard-{index}")
        self._index = index
        self._settings = settings
        self._pool: asyncpg.Pool | None = None
        self._committer: GroupCommitter | None = None
        self._states: OrderedDict[uuid.UUID, SessionState] = OrderedDict()
        self._loading: dict[uuid.UUID, asyncio.Future[SessionState | None]] = {}
        self._pool_lock = asyncio.Lock()
        self._committed_events = 0
        self._commits = 0
        self._commit_seconds = 0.0
        self._last_commit_at = time.monotonic()
        self._redactor = Redactor(settings.processing.privacy)
        self._redacting = 0  # events being redacted (in worker threads): in flight, not yet queued
        self._admission = AdmissionControl(settings.limits.admission, f"session shard {index}")
        self._finalizer = Finalizer(
            settings, self._db, lambda sid: shard_index(sid, settings.shards.count) == index
        )
        # The sweeper starts here, once, not on a first call: a restarted shard must resume the
        # finalisations its predecessor left at once, because after a node loss nothing else
        # may call it for a long time and such a session stayed `finalizing` until something
        # did (seen in cluster.chaos.spread's node loss). Ray builds an async actor inside its
        # event loop; a shard built outside one (a unit test's) does not sweep.
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            self._finalizer.ensure_sweeping()

    # -- public methods (called through the actor handle) ---------------------------------

    async def call(self, method: ShardCall, *args: Any, request_id: str | None = None) -> Any:
        """The way in for an ingress's calls: `method(*args)` with the caller's request id
        bound, so this shard's log lines and the tasks it starts carry it."""
        if method not in _CALLS:
            raise TracemillError(f"a shard has no call {method!r}")
        with bound_request(request_id):  # a contextvar: local to this call's task
            return await getattr(self, method)(*args)

    async def ping(self) -> dict[str, Any]:
        committer = await self._commit_queue()
        return {
            "shard": self._index,
            "pid": os.getpid(),
            "sessions_cached": len(self._states),
            "queued_events": committer.queued_events,
            "redacting_events": self._redacting,
            "admitted_events": self._admission.in_flight,
            "events_per_s": round(self._admission.rate.per_s),
            "estimated_delay_s": round(self._admission.estimate_s(), 3),
            "refused_batches": self._admission.refused,
            "db_connections_idle": self._pool.get_idle_size() if self._pool is not None else None,
            "committed_events": self._committed_events,
            "commits": self._commits,
            "commit_seconds": round(self._commit_seconds, 3),
            "finalizations_running": self._finalizer.running(),
        }

    async def check_health(self) -> None:
        """Raise when this shard cannot do its job: events queued and no commit finishing for
        `_STALLED_S` (a wedged commit loop, or a database that takes writes no more). The
        ingress's /readyz asks every shard, and names the ones that fail."""
        committer = await self._commit_queue()
        stalled = time.monotonic() - self._last_commit_at
        if committer.queued_events and stalled > _STALLED_S:
            raise DependencyUnavailable(
                f"shard {self._index}: {committer.queued_events} events queued, no commit for {stalled:.0f} s",
                retry_after_s=2.0,
            )

    async def create_session(
        self, org_id: uuid.UUID, session_id: uuid.UUID, fields: dict[str, Any], request_hash: bytes
    ) -> dict[str, Any]:
        """Idempotent create: the same body again answers the same; another body is a conflict."""
        pool = await self._db()
        # Stored redacted, and compared by the redacted form's hash (or, for a row stored before
        # session fields were redacted, by the raw body's hash the ingress sent).
        redacted = await asyncio.to_thread(redact_session, self._redactor, fields)
        row = await self._retry(
            lambda: sessions_repo.insert_session(
                pool, session_id=session_id, org_id=org_id, fields=redacted.fields,
                request_hash=redacted.request_hash,
            ),
            "session create",
        )
        if row is not None:
            self._remember(SessionState(session_id, org_id, "recording"))
            log.info("session %s created", session_id)
            return {"created": True, "session_id": str(session_id), "status": "recording"}
        existing = await self._retry(lambda: sessions_repo.fetch_session(pool, session_id), "session read")
        if existing is None:  # deleted between the two statements: let the client try again
            raise Conflict("the session changed while it was being created; retry")
        if existing["org_id"] != org_id:
            raise Conflict("this session_id is already used", code="session_id_taken")
        if bytes(existing["request_hash"]) not in (redacted.request_hash, request_hash):
            raise Conflict(
                "a session with this session_id exists with a different body", code="session_conflict"
            )
        return {"created": False, "session_id": str(session_id), "status": existing["status"]}

    async def ingest(
        self, org_id: uuid.UUID, session_id: uuid.UUID, events: RedactedBatch | Sequence[EncodedEvent]
    ) -> dict[str, Any]:
        """Store a batch, redacted; the answer (an ack) comes only after the commit. An ingress
        replica sends a RedactedBatch (redacted and encoded there, where the work scales out):
        this loop then only orders, de-duplicates, commits and acks. Plain rows (a caller from
        before that, say during a rolling deploy) are redacted here, in a worker thread."""
        counts = events.counts if isinstance(events, RedactedBatch) else None
        rows = events.events if isinstance(events, RedactedBatch) else events
        state = await self._recording_state(org_id, session_id)
        committer = await self._commit_queue()
        fresh = [ev for ev in rows if not state.is_stored(ev.seq)]
        duplicates = len(rows) - len(fresh)
        if not fresh:
            return state.ack(0, duplicates)
        if committer.queued_events + self._redacting + len(fresh) > self._settings.shards.max_inflight_events:
            telemetry.record_slow_down(self._index)
            raise Overloaded(
                "the session shard is saturated; resend later",
                retry_after_s=self._settings.shards.slow_down_ms / 1000,
            )
        try:  # refused when its ack would come past the target (actors/ingest/admission.py)
            self._admission.admit(len(fresh))
        except Overloaded:
            telemetry.record_slow_down(self._index)
            raise
        completed = False
        try:
            self._redacting += len(fresh)
            try:
                with telemetry.time_task("redact"):
                    # In a worker thread: the loop keeps answering the shard's other sessions meanwhile.
                    redacted = (RedactedBatch((fresh, counts)) if counts is not None
                                else await asyncio.to_thread(redact_batch, self._redactor, fresh))
            finally:
                self._redacting -= len(fresh)
            # A finish that began meanwhile waits only for batches already queued: this one may be
            # queued only if the session is still recording (nothing awaits between here and there).
            state = await self._recording_state(org_id, session_id)
            telemetry.set_shard_inflight(self._index, committer.queued_events + len(fresh))
            ack = await committer.submit(state, redacted.events, duplicates, redacted.counts)
            completed = True
        finally:
            self._admission.done(len(fresh), completed=completed)
        telemetry.set_shard_inflight(self._index, committer.queued_events)
        self._finalizer.events_acked(session_id, state.acked_through)
        return ack

    async def ingest_many(
        self, batches: Sequence[tuple[uuid.UUID, uuid.UUID, RedactedBatch | Sequence[EncodedEvent], str | None]]
    ) -> list[dict[str, Any] | TracemillError]:
        """Many clients' batches in one actor call; each gets its own ack or error back.

        An ingress replica coalesces the frames bound for this shard into one call because
        a Ray actor call costs about a millisecond of CPU here, far more than storing a frame.
        """
        results = await asyncio.gather(
            *(self.call("ingest", org_id, session_id, events, request_id=request_id)
              for org_id, session_id, events, request_id in batches),
            return_exceptions=True,
        )
        return [r if isinstance(r, (dict, TracemillError)) else _unexpected(r) for r in results]

    async def finish(self, org_id: uuid.UUID, session_id: uuid.UUID, finish: dict[str, Any]) -> str:
        """recording → finalizing after every batch accepted before it is committed."""
        state = await self._state(org_id, session_id)
        committer = await self._commit_queue()
        state.closing = True
        try:
            await asyncio.gather(*committer.pending_for(session_id), return_exceptions=True)
            pool = await self._db()
            status = await self._retry(lambda: sessions_repo.mark_finalizing(pool, session_id, finish), "finish")
        finally:
            # A finish that failed changed nothing: the session keeps recording.
            state.closing = False
        state.status = status
        if status == "finalizing":
            log.info("session %s finishing: finalisation starts", session_id)
            self._finalizer.start(session_id)
        return status

    async def check_recording(self, org_id: uuid.UUID, session_id: uuid.UUID) -> None:
        await self._recording_state(org_id, session_id)

    async def register_screenshot(self, org_id: uuid.UUID, session_id: uuid.UUID, row: dict[str, Any]) -> bool:
        """Record a screenshot whose bytes are already durable in the object store."""
        state = await self._recording_state(org_id, session_id)
        pool = await self._db()
        created = await self._retry(lambda: sessions_repo.insert_screenshot(pool, row), "screenshot record")
        self._finalizer.screenshot_arrived(session_id, row["screenshot_id"], row.get("seq"), state.acked_through)
        return created

    # -- state ---------------------------------------------------------------------------

    async def _recording_state(self, org_id: uuid.UUID, session_id: uuid.UUID) -> SessionState:
        state = await self._state(org_id, session_id)
        if state.status != "recording" or state.closing:
            raise SessionClosed(f"session {session_id} is {state.status}; it accepts no more data")
        return state

    async def _state(self, org_id: uuid.UUID, session_id: uuid.UUID) -> SessionState:
        state = self._states.get(session_id)
        if state is None:
            state = await self._load(session_id)
        # Another organisation's session looks exactly like a missing one.
        if state is None or state.org_id != org_id:
            raise NotFound(f"no session {session_id}")
        self._states.move_to_end(session_id)
        return state

    async def _load(self, session_id: uuid.UUID) -> SessionState | None:
        """Rebuild from PostgreSQL; concurrent first touches share one load."""
        pending = self._loading.get(session_id)
        if pending is not None:
            return await pending
        future: asyncio.Future[SessionState | None] = asyncio.get_running_loop().create_future()
        self._loading[session_id] = future
        try:
            pool = await self._db()
            found = await self._retry(lambda: sessions_repo.fetch_session_state(pool, session_id), "session load")
            state = None
            if found is not None:
                row, above = found
                state = SessionState(session_id, row["org_id"], row["status"], row["acked_through"], set(above))
                self._remember(state)
            future.set_result(state)
            return state
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: concurrent waiters re-raise it themselves
            raise
        finally:
            del self._loading[session_id]

    def _remember(self, state: SessionState) -> None:
        self._states[state.session_id] = state
        self._states.move_to_end(state.session_id)
        while len(self._states) > _MAX_CACHED_SESSIONS:
            self._states.popitem(last=False)

    # -- plumbing ------------------------------------------------------------------------

    async def _db(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._pool_lock:
                if self._pool is None:
                    self._pool = await connect_pool(
                        self._settings.database, max_size=self._settings.shards.pool_max, init=prepare_staging
                    )
        return self._pool

    async def _commit_queue(self) -> GroupCommitter:
        if self._committer is None:
            self._committer = GroupCommitter(await self._db(), self._settings.shards, self._count_commit,
                                             keyring.install(self._settings.encryption))
        return self._committer

    def _count_commit(self, inserted: int, seconds: float) -> None:
        self._last_commit_at = time.monotonic()
        self._committed_events += inserted
        self._commits += 1
        self._commit_seconds += seconds

    async def _retry(self, op: Callable[[], Awaitable[T]], what: str) -> T:
        return await with_retries(op, attempts=self._settings.shards.commit_attempts, what=what)


def _unexpected(exc: BaseException) -> TracemillError:
    """A bug must not pass for a client error, nor leak internals: log it, answer 500."""
    log.error("ingest failed unexpectedly", exc_info=exc)
    return TracemillError("internal error while storing the batch")
