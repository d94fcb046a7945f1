"""The WebSocket stream: first-frame auth, events frames in, acks out in order.

A reader validates each frame and hands its batch to the shard at once; a writer answers the
frames strictly in arrival order. So a client may keep several frames in flight, and a bad
frame costs only its own error frame: the connection stays open.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from actors.auth import Principal
from actors.errors import (
    DependencyUnavailable,
    Forbidden,
    InvalidInput,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    SessionClosed,
    TracemillError,
    Unauthenticated,
)
from actors.ingest.events import parse_events
from actors.ingest.frames import validate_frame
from actors.ingest.rows import StoredEvent
from actors.logs import bound_request
from serve_app.error_responses import error_body
from serve_app.http_io import decode_json, session_uuid
from serve_app.rate_limits import bound_peer
from configs.settings import IngestLimits
from serve_app.services import Services

__all__ = ["stream_session"]

log = logging.getLogger(__name__)

_CLOSE_CODES: list[tuple[type[TracemillError], int]] = [
    (Unauthenticated, 4401),
    (Forbidden, 4403),
    (NotFound, 4404),
    (SessionClosed, 4409),
    (Overloaded, 1013),
    (DependencyUnavailable, 1013),  # "try again later"
    (PayloadTooLarge, 1009),  # "message too big"
]
# An auth frame holds one key. Serve 2.60 gives no way to set its server's WebSocket size limit
# (uvicorn's 16 MiB), so a larger first frame is refused here before it is parsed: nobody
# unauthenticated gets 16 MiB of JSON decoded.
_MAX_AUTH_FRAME_BYTES = 4096
# Frames that may be in flight per connection before the reader waits for the writer.
_PIPELINE_DEPTH = 16


async def stream_session(services: Services, ws: WebSocket, raw_id: str) -> None:
    request_id = ws.headers.get("x-request-id") or str(uuid.uuid4())
    # The whole stream is one request: its frames share the id and the client address.
    with bound_request(request_id), bound_peer(ws.client, ws.headers.get("x-forwarded-for")):
        await _serve_stream(services, ws, raw_id, request_id)


async def _serve_stream(services: Services, ws: WebSocket, raw_id: str, request_id: str) -> None:
    await ws.accept()
    services.metrics.stream_opened()
    try:
        principal = await _authenticate(services, ws)
        session_id = session_uuid(raw_id)
        await services.check_session(principal, session_id)
        await services.check_consent(principal)  # refused: error frame, close 4403 (a Forbidden)
        await services.shard(session_id).check_recording(principal.org_id, session_id)
        await _pump(services, ws, principal, session_id, request_id)
    except WebSocketDisconnect:
        pass
    except TracemillError as exc:
        await _refuse(ws, exc, request_id)
    finally:
        services.metrics.stream_closed()


async def _authenticate(services: Services, ws: WebSocket) -> Principal:
    """A bearer header if the client could set one, else the first frame within the deadline."""
    header = ws.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return await services.authorize(ws, header[7:].strip())
    try:
        message = await asyncio.wait_for(ws.receive(), services.settings.ingest.ws_auth_timeout_s)
    except asyncio.TimeoutError:
        raise Unauthenticated("no auth frame within the deadline") from None
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    raw = message.get("text") or message.get("bytes") or b""
    if len(raw) > _MAX_AUTH_FRAME_BYTES:
        raise PayloadTooLarge(f"the auth frame exceeds {_MAX_AUTH_FRAME_BYTES} bytes")
    try:
        frame = decode_json(raw)
    except TracemillError:
        frame = None
    if not isinstance(frame, dict) or frame.get("type") != "auth" or not isinstance(frame.get("api_key"), str):
        raise Unauthenticated('the first frame must be {"type": "auth", "api_key": "..."}')
    return await services.authorize(ws, frame["api_key"])


async def _pump(
    services: Services, ws: WebSocket, principal: Principal, session_id: uuid.UUID, request_id: str
) -> None:
    # The writer and its queue come with the first frame: an open, idle stream (most of them,
    # most of the time) holds neither (issue 15.4: memory per idle session).
    queue: asyncio.Queue[tuple[str, float, Any] | None] | None = None
    writer: asyncio.Task[None] | None = None
    frame_no = 0
    try:
        while writer is None or not writer.done():
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            # A withdrawal ends an open stream too (within the gate's cache time): the frames
            # before it are answered, this one is not taken, and the stream closes with 4403.
            await services.check_consent(principal)
            if queue is None or writer is None:
                queue = asyncio.Queue(_PIPELINE_DEPTH)
                writer = asyncio.create_task(_write_answers(services, ws, queue))
            frame_no += 1
            started = time.perf_counter()
            item = _submit(services, principal, session_id, message)
            await queue.put((f"{request_id}/{frame_no}", started, item))
    finally:
        if queue is not None and writer is not None:
            await _finish_writer(queue, writer)


async def _finish_writer(queue: asyncio.Queue[tuple[str, float, Any] | None], writer: asyncio.Task[None]) -> None:
    if not writer.done():
        try:  # let the writer answer what was read before the client left
            await asyncio.wait_for(queue.put(None), timeout=30)
            await asyncio.wait([writer], timeout=30)
        except asyncio.TimeoutError:
            pass
    writer.cancel()
    if writer.done() and not writer.cancelled() and writer.exception() is not None:
        log.debug("stream writer ended: %r", writer.exception())


def _submit(services: Services, principal: Principal, session_id: uuid.UUID, message: dict[str, Any]) -> Any:
    """Validate one frame and start its commit; what goes to the writer is a task or an error."""
    limits = services.settings.ingest
    data = message.get("text")
    if data is None:
        data = message.get("bytes") or b""
    try:
        services.guard.charge_frame(principal)  # refused: slow_down, nothing of the frame stored
        services.guard.admission.precheck()  # past the ack target already: refused unparsed
        if _frame_bytes(data, limits.max_frame_bytes) > limits.max_frame_bytes:
            raise PayloadTooLarge(f"the frame exceeds the limit of {limits.max_frame_bytes} bytes")
        # One parse from the bytes; a frame that path cannot vouch for is decoded and checked
        # precisely, which also words its errors.
        events = validate_frame(data, limits)
        if events is None and (events := _precise_events(data, limits)) is None:
            return None  # harmless repeat of the first frame
        services.guard.charge_events(principal, len(events))
        services.guard.admission.admit(len(events))  # its ack would come past the target: slow_down
    except TracemillError as exc:
        return exc
    services.metrics.record_received("ws", len(events))
    ingest = services.shard(session_id).ingest(principal.org_id, session_id, events, services.settings.processing.privacy)
    return asyncio.ensure_future(services.guard.admitted(len(events), ingest))


def _precise_events(data: str | bytes, limits: IngestLimits) -> list[StoredEvent] | None:
    """The frame's events (None for a repeated auth frame), or the error that says what is wrong."""
    frame = decode_json(data)
    if not isinstance(frame, dict):
        raise InvalidInput("a frame must be a JSON object with a 'type'")
    kind = frame.get("type")
    if kind == "auth":
        return None
    if kind != "events" or "events" not in frame:
        raise InvalidInput(
            "unknown frame; expected {\"type\": \"events\", \"events\": [...]}",
            [{"field": "type", "error": "expected 'events'"}],
        )
    return parse_events(frame["events"], limits)


def _frame_bytes(data: str | bytes, limit: int) -> int:
    """The frame's size in bytes, as the limit counts it: a text frame of `limit` characters
    may hold up to four times as many UTF-8 bytes (encoded only when that could matter)."""
    if isinstance(data, bytes) or len(data) * 4 <= limit or len(data) > limit:
        return len(data)
    return len(data.encode("utf-8", "surrogatepass"))


async def _write_answers(services: Services, ws: WebSocket, queue: asyncio.Queue[Any]) -> None:
    while (entry := await queue.get()) is not None:
        frame_id, started, item = entry
        if item is None:
            continue
        try:
            if isinstance(item, BaseException):
                raise item
            ack = await item
        except Overloaded as exc:
            services.metrics.record_slow_down(exc.code)
            await ws.send_json({"type": "slow_down", "retry_after_ms": int(exc.retry_after_s * 1000)})
            continue
        except TracemillError as exc:
            services.metrics.record_rejected(exc.code)
            await ws.send_json({"type": "error", **error_body(exc, frame_id)})
            continue
        except Exception:  # noqa: BLE001 - the connection outlives one bad frame
            log.exception("frame %s failed", frame_id)
            err = TracemillError("internal error; the request id identifies it in the logs")
            await ws.send_json({"type": "error", **error_body(err, frame_id)})
            continue
        services.metrics.record_ack("ws", ack, time.perf_counter() - started)
        await ws.send_json({"type": "ack", **ack})


async def _refuse(ws: WebSocket, exc: TracemillError, request_id: str) -> None:
    """Tell the client why, then close with a code it can act on (4401 means: fix the key)."""
    code = next((c for cls, c in _CLOSE_CODES if isinstance(exc, cls)), 1011)
    if ws.application_state == WebSocketState.CONNECTED:
        try:
            await ws.send_json({"type": "error", **error_body(exc, request_id)})
            await ws.close(code=code, reason=exc.code)
        except (RuntimeError, WebSocketDisconnect):
            pass
