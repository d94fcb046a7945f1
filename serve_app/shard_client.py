"""An ingress replica's client for one session shard: every call to a shard goes through it.

Each call carries the request id bound in the caller's context (the shard binds it again
around the method, so its log lines and the tasks it starts carry the id), and what a shard
raised comes back as our own error type.

Ingest calls are coalesced. A Ray actor call costs about a millisecond of CPU on a small node
(measured: ~700 calls/s across two processes on 2 cores, before any work), so a call per
frame caps the whole ingest far below what Serve and PostgreSQL can do. Instead the client
keeps a queue of waiting frames and at most `max_calls_in_flight` calls: whatever queued while
the previous call ran goes in the next one. Under light load a frame still leaves at once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Sequence

from ray.actor import ActorHandle

from actors.ingest.batcher import take_batch
from actors.ingest.rows import StoredEvent
from actors.ingest.shard import ShardCall
from actors.logs import current_request_id
from actors.privacy.redact import RedactionSettings
from actors.privacy.write_path import RedactedBatch, redact_batch, redactor_for
from serve_app.error_responses import call_actor, unwrap

__all__ = ["ShardClient"]


@dataclass
class _Pending:
    item: tuple[uuid.UUID, uuid.UUID, RedactedBatch, str | None]  # org, session, events, request id
    future: asyncio.Future[dict[str, Any]]


def _event_count(pending: _Pending) -> int:
    return len(pending.item[2].events)


@dataclass
class ShardClient:
    handle: ActorHandle
    max_calls_in_flight: int = 2
    max_events_per_call: int = 20_000
    _queue: deque[_Pending] = field(default_factory=deque)
    _in_flight: int = 0

    async def create_session(
        self, org_id: uuid.UUID, session_id: uuid.UUID, fields: dict[str, Any], request_hash: bytes
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("create_session", org_id, session_id, fields, request_hash)
        return result

    async def finish(self, org_id: uuid.UUID, session_id: uuid.UUID, finish: dict[str, Any]) -> str:
        status: str = await self._call("finish", org_id, session_id, finish)
        return status

    async def check_recording(self, org_id: uuid.UUID, session_id: uuid.UUID) -> None:
        await self._call("check_recording", org_id, session_id)

    async def register_screenshot(self, org_id: uuid.UUID, session_id: uuid.UUID, row: dict[str, Any]) -> bool:
        created: bool = await self._call("register_screenshot", org_id, session_id, row)
        return created

    async def check_health(self) -> None:
        await self._call("check_health")

    async def _call(self, method: ShardCall, *args: Any) -> Any:
        return await call_actor(self.handle.call.remote(method, *args, request_id=current_request_id()))

    # -- ingest, coalesced -----------------------------------------------------------------

    async def ingest(
        self, org_id: uuid.UUID, session_id: uuid.UUID, events: Sequence[StoredEvent], privacy: RedactionSettings
    ) -> dict[str, Any]:
        """Redact and encode a validated batch here, then store it; the ack comes after the
        shard committed it. Redaction runs in a worker thread: a hostile batch's regex work
        must not hold this replica's loop, which serves every other connection."""
        batch = await asyncio.to_thread(redact_batch, redactor_for(privacy), events)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        item = (org_id, session_id, batch, current_request_id())
        self._queue.append(_Pending(item, future))
        self._send_if_free()
        return await future

    def _send_if_free(self) -> None:
        while self._queue and self._in_flight < self.max_calls_in_flight:
            batch, _ = take_batch(self._queue, _event_count, self.max_events_per_call)
            self._in_flight += 1
            asyncio.get_running_loop().create_task(self._send(batch))

    async def _send(self, batch: list[_Pending]) -> None:
        try:
            results: list[Any] = await self.handle.ingest_many.remote([p.item for p in batch])
        except Exception as exc:  # noqa: BLE001 - the whole call failed: every frame hears why
            cause = unwrap(exc)
            results = [cause] * len(batch)
        finally:
            self._in_flight -= 1
            self._send_if_free()
        for pending, result in zip(batch, results):
            if pending.future.done():
                continue
            if isinstance(result, BaseException):
                pending.future.set_exception(result)
            else:
                pending.future.set_result(result)
