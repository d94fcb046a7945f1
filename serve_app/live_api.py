"""GET /v1/live: server-sent events of the caller's organisation (`session.created`,
`session.finalized` with status and quality), with `id:` lines for catch-up.

Each ingress replica keeps one PostgreSQL connection that LISTENs on `tracemill_live` (the
trigger of migration 0014 NOTIFYs there when a session's row is inserted or reaches a final
status, delivered on commit) and hands every notification to the open streams of that
organisation. A stream that starts with `Last-Event-ID` (the header a reconnecting client
sends) or `?since=` first replays what the log holds after that id, then goes live; one
without starts at the newest id.

Authentication is the usual `Authorization: Bearer` header: the pages read the stream with
fetch(), which can send it, rather than EventSource, which cannot; so the key never travels in
a URL (URLs end up in proxy and access logs and in the browser's history) and no second kind of
credential (a ticket) is needed. A stream lasts at most `live.max_stream_s`: the client
reconnects with its last id, which also re-checks the key (revoked or expired keys stop there).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from fastapi import Request
from fastapi.responses import StreamingResponse

from actors.errors import InvalidInput, Overloaded
from actors.storage import live_repo
from actors.storage.live_repo import LiveEvent
from actors.storage.postgres import with_retries
from configs.live import LiveSettings
from serve_app.services import Services

__all__ = ["LiveHub", "format_event", "parse_since", "stream_live"]

log = logging.getLogger(__name__)

_RECONNECT_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 5.0)
_PRUNE_EVERY_S = 600.0
_CLOSED = None  # put on a subscriber's queue when the listener lost its connection
_QUEUE_MAX = 1000


def format_event(event: LiveEvent) -> bytes:
    """One SSE message: id, event name and a one-line JSON body."""
    data = json.dumps(event.data(), separators=(",", ":"))
    return f"id: {event.event_id}\nevent: {event.kind}\ndata: {data}\n\n".encode()


def parse_since(request: Request) -> int | None:
    """The id to catch up from: `Last-Event-ID` (a reconnect) wins over `?since=`; None: from now."""
    unknown = set(request.query_params) - {"since"}
    if unknown:
        raise InvalidInput("invalid query parameters",
                           [{"field": f"query.{n[:64]}", "error": "unknown parameter"} for n in sorted(unknown)])
    for field, raw in (("header.last-event-id", request.headers.get("last-event-id")),
                       ("query.since", request.query_params.get("since"))):
        if raw is None or raw == "":
            continue
        if not raw.isdigit() or len(raw) > 18:
            raise InvalidInput("invalid live stream position",
                               [{"field": field, "error": "a non-negative event id"}])
        return int(raw)
    return None


class LiveHub:
    """One replica's LISTEN connection and the queues of its open streams, by organisation."""

    def __init__(self, services: Services, settings: LiveSettings):
        self.services = services
        self.settings = settings
        self.subscribers: dict[uuid.UUID, set[asyncio.Queue[LiveEvent | None]]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._last_prune = 0.0

    def open_streams(self) -> int:
        return sum(len(qs) for qs in self.subscribers.values())

    async def subscribe(self, org_id: uuid.UUID) -> asyncio.Queue[LiveEvent | None]:
        if self.open_streams() >= self.settings.max_streams:
            raise Overloaded(f"this replica serves {self.settings.max_streams} live streams already; retry shortly",
                             retry_after_s=5.0)
        queue: asyncio.Queue[LiveEvent | None] = asyncio.Queue(_QUEUE_MAX)
        self.subscribers.setdefault(org_id, set()).add(queue)
        if self._listener is None or self._listener.done():
            self._listening.clear()
            self._listener = asyncio.create_task(self._listen(), name="live-listener")
        # Events are delivered only once LISTEN is in place; the catch-up query runs after it.
        try:
            await asyncio.wait_for(self._listening.wait(), timeout=10)
        except asyncio.TimeoutError:
            self.unsubscribe(org_id, queue)
            raise Overloaded("live updates are not available right now (no database listener)", retry_after_s=2.0) from None
        return queue

    def unsubscribe(self, org_id: uuid.UUID, queue: asyncio.Queue[LiveEvent | None]) -> None:
        queues = self.subscribers.get(org_id)
        if queues is not None:
            queues.discard(queue)
            if not queues:
                del self.subscribers[org_id]

    def _deliver(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        event = live_repo.parse_notification(payload)
        if event is None:
            return
        for queue in list(self.subscribers.get(event.org_id, ())):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:  # a stalled client: end its stream, it catches up on reconnect
                self._close(queue)

    def _close(self, queue: asyncio.Queue[LiveEvent | None]) -> None:
        with contextlib.suppress(asyncio.QueueEmpty):
            while queue.qsize() >= _QUEUE_MAX:
                queue.get_nowait()
        queue.put_nowait(_CLOSED)

    async def _listen(self) -> None:
        """Hold the LISTEN connection while anyone streams; on loss, end the streams (their
        clients reconnect and catch up from the log) and connect again."""
        attempt = 0
        while self.subscribers:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self.services.settings.database.url.get_secret_value(),
                                             timeout=self.services.settings.database.connect_timeout_s)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c: lost.set())
                await conn.add_listener(live_repo.CHANNEL, self._deliver)
                self._listening.set()
                attempt = 0
                while self.subscribers and not lost.is_set():
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(lost.wait(), timeout=5.0)
                    if not conn.is_closed():
                        await self._maybe_prune(conn)
                if lost.is_set():
                    raise ConnectionError("the LISTEN connection was lost")
            except Exception as exc:  # noqa: BLE001 - any loss ends the streams the same way
                self._listening.clear()
                log.warning("live listener: %s; streams end and clients catch up", type(exc).__name__)
                for queues in list(self.subscribers.values()):
                    for queue in list(queues):
                        self._close(queue)
                await asyncio.sleep(_RECONNECT_DELAYS_S[min(attempt, len(_RECONNECT_DELAYS_S) - 1)])
                attempt += 1
            finally:
                self._listening.clear()  # a stream that subscribes now waits for the next LISTEN
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2)
        self._listening.clear()

    async def _maybe_prune(self, conn: asyncpg.Connection) -> None:
        now = time.monotonic()
        if now - self._last_prune < _PRUNE_EVERY_S:
            return
        self._last_prune = now
        gone = await live_repo.prune(conn, self.settings.retention_s)
        if gone:
            log.info("live events log: pruned %d events older than %d s", gone, self.settings.retention_s)


async def stream_live(services: Services, hub: LiveHub, request: Request) -> StreamingResponse:
    principal = await services.authorize(request)
    since = parse_since(request)
    workspace = getattr(principal, "workspace_id", None)  # a stream shows one workspace's sessions
    queue = await hub.subscribe(principal.org_id)
    try:
        pool = await services.db()
        if since is None:
            start = await with_retries(lambda: live_repo.latest_id(pool, principal.org_id), attempts=2,
                                       what="live stream start")
            backlog: list[LiveEvent] = []
        else:
            backlog = await with_retries(
                lambda: live_repo.events_after(pool, principal.org_id, since, hub.settings.catch_up_max, workspace),
                attempts=2, what="live catch-up")
            start = since
    except BaseException:
        hub.unsubscribe(principal.org_id, queue)
        raise
    body = _messages(hub, principal.org_id, workspace, queue, start, backlog)
    return StreamingResponse(body, media_type="text/event-stream", headers={
        "X-Accel-Buffering": "no",  # nginx and the like: pass each message on at once
    })


async def _messages(hub: LiveHub, org_id: uuid.UUID, workspace: uuid.UUID | None,
                    queue: asyncio.Queue[LiveEvent | None], start: int, backlog: list[LiveEvent]) -> AsyncIterator[bytes]:
    settings = hub.settings
    sent: set[int] = set()
    try:
        # The retry hint, and the position a client without events yet reconnects from.
        yield f"retry: 2000\nid: {start}\nevent: live.ready\ndata: {{\"since\":{start}}}\n\n".encode()
        for event in backlog:
            sent.add(event.event_id)
            yield format_event(event)
        deadline = time.monotonic() + settings.max_stream_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = await asyncio.wait_for(queue.get(), timeout=min(left, settings.heartbeat_s))
            except asyncio.TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if event is _CLOSED:
                return
            if event.event_id in sent or not event.visible_in(workspace):
                continue  # already replayed from the log, or another workspace's
            sent.add(event.event_id)
            yield format_event(event)
    finally:
        hub.unsubscribe(org_id, queue)
