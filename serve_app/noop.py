"""A no-op ingest endpoint: the baseline the ingest benchmark compares the real one against.

It speaks the same wire frames as the real `/v1/sessions/{id}/stream` (PROTOCOL.md, "Stream")
and the same `POST /v1/sessions` answer, but checks no key, validates nothing and stores
nothing. What is left is the cost of Ray Serve itself: the proxy (or HAProxy), the replica's
ASGI server, WebSocket framing and one `json.loads` per frame. The difference between a load
run against this app and one against the real app is what tracemill's own code costs.

Deploy it as its own Serve application next to the real one::

    serve.run(build_noop_app(), name="noop", route_prefix="/noop")
"""

# No `from __future__ import annotations` here. After @serve.deployment, `NoopIngest` names a
# Deployment, so the route methods cannot be pickled by reference: cloudpickle ships them by
# value with a __globals__ trimmed to the names their code uses. FastAPI in the replica then
# cannot resolve the string annotation "WebSocket" (or "Request"), takes the parameter for a
# required query parameter, and refuses every upgrade (close 1008 before accept, which the
# client sees as HTTP 403) and every request (422). Real annotation objects survive pickling.
import json
import uuid
from typing import Any

from fastapi import FastAPI, WebSocket
from pydantic import BaseModel, ConfigDict
from ray import serve

__all__ = ["NoopIngest", "build_noop_app", "answer_frame", "StreamState"]

# Every open WebSocket holds one `max_ongoing_requests` slot for its whole life (DESIGN.md,
# decision 4), so the default of 5 would cap the baseline at five connections.
MAX_ONGOING_REQUESTS = 2000


class SessionCreate(BaseModel):
    """The `POST /v1/sessions` body; only `session_id` matters to the no-op."""

    model_config = ConfigDict(extra="allow")

    session_id: str | None = None


class SessionCreated(BaseModel):
    session_id: str
    status: str = "recording"


class StreamState(BaseModel):
    """What one no-op connection remembers: the highest `seq` it has seen."""

    max_seq: int = -1


def _error_frame(code: str, message: str) -> str:
    # Same shape as the real endpoint's error frames so clients exercise the same branch.
    body = {"code": code, "message": message, "details": [], "request_id": ""}
    return json.dumps({"type": "error", "error": body})


def answer_frame(raw: str | bytes, state: StreamState) -> str | None:
    """The reply to one client frame, or None when the frame needs none (auth).

    Kept free of I/O so unit tests can call it without Serve.
    """
    try:
        frame: Any = json.loads(raw)
    except ValueError:
        return _error_frame("malformed_json", "frame is not valid JSON")
    if not isinstance(frame, dict):
        return _error_frame("invalid_input", "frame must be a JSON object")
    kind = frame.get("type")
    if kind == "auth":
        return None  # accepted unchecked: the baseline measures transport, not auth
    if kind != "events":
        return _error_frame("invalid_input", f"unknown frame type {kind!r}")
    events = frame.get("events")
    if not isinstance(events, list):
        return _error_frame("invalid_input", "'events' must be a list")
    for event in events:
        seq = event.get("seq") if isinstance(event, dict) else None
        if isinstance(seq, int) and seq > state.max_seq:
            state.max_seq = seq
    ack = {
        "type": "ack",
        "acked_through": state.max_seq,
        "accepted": len(events),
        "duplicates": 0,
        "gaps": [],
    }
    return json.dumps(ack)


app = FastAPI(
    title="tracemill no-op ingest",
    description="Baseline for the ingest benchmark: same frames as /v1, no work behind them.",
)


@serve.deployment(
    name="NoopIngest",
    num_replicas=1,
    max_ongoing_requests=MAX_ONGOING_REQUESTS,
    # Fractional CPU so the baseline fits next to the real app on a 2-core node (decision 5).
    ray_actor_options={"num_cpus": 0.1},
)
@serve.ingress(app)
class NoopIngest:
    @app.post("/v1/sessions", status_code=201, response_model=SessionCreated)
    async def create_session(self, body: SessionCreate | None = None) -> SessionCreated:
        session_id = body.session_id if body and body.session_id else str(uuid.uuid4())
        return SessionCreated(session_id=session_id)

    @app.websocket("/v1/sessions/{session_id}/stream")
    async def stream(self, websocket: WebSocket, session_id: str) -> None:
        await websocket.accept()
        state = StreamState()
        while True:
            # receive() rather than receive_text(): a client may send binary frames, and a
            # disconnect arrives as a message instead of an exception.
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            raw = message.get("text")
            if raw is None:
                raw = message.get("bytes") or b""
            reply = answer_frame(raw, state)
            if reply is not None:
                await websocket.send_text(reply)


def build_noop_app() -> serve.Application:
    """The bound no-op application, ready for `serve.run(..., route_prefix="/noop")`."""
    return NoopIngest.bind()
