"""The client side of the ingest stream (PROTOCOL.md, "Stream"), shared by the load generator
and `tracemill demo`: open a session's WebSocket with first-frame auth, and send one frame of
events and wait for its answer, honouring `slow_down`.

One frame is in flight at a time: the server answers frames in order, so waiting for each
answer keeps "which events are acked" exact without any bookkeeping.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

__all__ = ["FrameReply", "exchange", "open_stream", "stream_url"]

# Longest a slow_down is honoured for; a server asking for more is treated as if it asked this.
MAX_BACKOFF_S = 5.0


def stream_url(base_url: str, session_id: str, prefix: str = "") -> str:
    base = base_url.rstrip("/").replace("http", "ws", 1)  # http->ws, https->wss
    return f"{base}{prefix}/v1/sessions/{session_id}/stream"


async def open_stream(
    base_url: str,
    session_id: str,
    api_key: str,
    *,
    prefix: str = "",
    max_size: int = 16 * 1024 * 1024,
    open_timeout: float = 10.0,
    compression: bool = False,
) -> ClientConnection:
    """Open the session's stream and authenticate with the first frame, as a browser does
    (it cannot set headers on a WebSocket). A refused key shows as the close code 4401 on
    the first receive."""
    ws = await connect(
        stream_url(base_url, session_id, prefix),
        max_size=max_size,
        open_timeout=open_timeout,
        # Pings would compete with acks on a saturated server and close healthy
        # connections with 1011; callers bound their runs anyway.
        ping_interval=None,
        close_timeout=2.0,
        compression="deflate" if compression else None,
    )
    await ws.send(json.dumps({"type": "auth", "api_key": api_key}))
    return ws


@dataclass
class FrameReply:
    """The server's answer to one events frame: an ack, or an error (nothing of it stored)."""

    ack: dict[str, Any] | None
    error: dict[str, Any] | None
    slow_downs: int
    sent_at: float = 0.0  # time.perf_counter() of the last send: the one answered
    slow_down_waits: list[float] | None = None  # seconds from each shed send to its slow_down


async def exchange(ws: ClientConnection, frame: str) -> FrameReply:
    """Send one frame and wait for its ack or error. On `slow_down` the same frame is sent
    again after the asked-for pause: its events were not stored."""
    slow_downs = 0
    waits: list[float] = []
    sent_at = time.perf_counter()
    await ws.send(frame)
    while True:
        msg: dict[str, Any] = json.loads(await ws.recv())
        kind = msg.get("type")
        if kind == "ack":
            return FrameReply(ack=msg, error=None, slow_downs=slow_downs, sent_at=sent_at, slow_down_waits=waits)
        if kind == "error":
            return FrameReply(ack=None, error=dict(msg.get("error") or {}), slow_downs=slow_downs, sent_at=sent_at,
                              slow_down_waits=waits)
        if kind == "slow_down":
            slow_downs += 1
            waits.append(time.perf_counter() - sent_at)
            retry_ms = msg.get("retry_after_ms", 100)
            await asyncio.sleep(min(max(float(retry_ms), 0.0) / 1000.0, MAX_BACKOFF_S))
            sent_at = time.perf_counter()
            await ws.send(frame)
        # Unknown server frames are ignored: the one in-flight frame still awaits its answer.
