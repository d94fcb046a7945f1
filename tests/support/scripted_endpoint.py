"""A scripted ingest endpoint speaking PROTOCOL.md's wire format, for client behaviour the real
server shows only under conditions a test cannot cause on a shared stack: it answers the first
events frames with `slow_down` (what the real shard does when its in-flight budget is spent),
then acks like the real one (acked_through over the seqs it holds, duplicates counted).

Only the recording client is under test with it; the real server's own slow_down is covered by
the ingest tests. It records when each frame arrived, so a test can check the pause was kept.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from cluster.doubles.net import free_port

__all__ = ["Frame", "ScriptedEndpoint", "scripted_endpoint"]


@dataclass
class Frame:
    at: float  # time.monotonic() on arrival
    seqs: list[int]
    answer: str  # "ack" or "slow_down"


@dataclass
class ScriptedEndpoint:
    key: str
    slow_down_frames: int = 2
    retry_after_ms: int = 1500
    url: str = ""
    seqs: set[int] = field(default_factory=set)
    duplicates: int = 0
    frames: list[Frame] = field(default_factory=list)
    finished: dict[str, Any] | None = None
    shots: dict[str, int] = field(default_factory=dict)

    def acked_through(self) -> int:
        n = -1
        while n + 1 in self.seqs:
            n += 1
        return n

    def app(self) -> Starlette:
        async def create(request: Request) -> JSONResponse:
            body = await request.json()
            return JSONResponse({"session_id": body["session_id"], "status": "recording"}, status_code=201)

        async def finish(request: Request) -> JSONResponse:
            self.finished = await request.json()
            return JSONResponse({"status": "finalizing"}, status_code=202)

        async def screenshot(request: Request) -> JSONResponse:
            data = await request.body()
            self.shots[request.path_params["shot"]] = len(data)
            return JSONResponse({"screenshot_id": request.path_params["shot"], "bytes": len(data)}, status_code=201)

        async def healthz(request: Request) -> JSONResponse:
            return JSONResponse({"status": "ok"})

        async def stream(ws: WebSocket) -> None:
            await ws.accept()
            auth = json.loads(await ws.receive_text())
            if auth.get("type") != "auth" or auth.get("api_key") != self.key:
                await ws.close(code=4401)
                return
            try:
                while True:
                    frame = json.loads(await ws.receive_text())
                    seqs = [e["seq"] for e in frame["events"]]
                    if len([f for f in self.frames if f.answer == "slow_down"]) < self.slow_down_frames:
                        self.frames.append(Frame(time.monotonic(), seqs, "slow_down"))
                        await ws.send_json({"type": "slow_down", "retry_after_ms": self.retry_after_ms})
                        continue
                    self.frames.append(Frame(time.monotonic(), seqs, "ack"))
                    new = [s for s in seqs if s not in self.seqs]
                    self.duplicates += len(seqs) - len(new)
                    self.seqs.update(new)
                    await ws.send_json({"type": "ack", "acked_through": self.acked_through(), "accepted": len(new),
                                        "duplicates": len(seqs) - len(new), "gaps": []})
            except WebSocketDisconnect:
                pass

        return Starlette(routes=[
            Route("/healthz", healthz),
            Route("/v1/sessions", create, methods=["POST"]),
            Route("/v1/sessions/{sid}/finish", finish, methods=["POST"]),
            Route("/v1/sessions/{sid}/screenshots/{shot}", screenshot, methods=["PUT"]),
            WebSocketRoute("/v1/sessions/{sid}/stream", stream),
        ])


@contextmanager
def scripted_endpoint(key: str, **options: Any) -> Iterator[ScriptedEndpoint]:
    endpoint = ScriptedEndpoint(key, **options)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(endpoint.app(), host="127.0.0.1", port=port, log_level="warning",
                                           ws="websockets-sansio" if _has_sansio() else "auto"))
    thread = threading.Thread(target=server.run, name="scripted-endpoint", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the scripted endpoint did not start")
        time.sleep(0.05)
    endpoint.url = f"http://127.0.0.1:{port}"
    try:
        yield endpoint
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _has_sansio() -> bool:
    try:
        from uvicorn.protocols.websockets import websockets_sansio_impl  # noqa: F401
    except ImportError:
        return False
    return True
