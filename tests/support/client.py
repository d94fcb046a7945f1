"""A minimal PROTOCOL.md client for tests: plain HTTP and WebSocket, nothing of ours."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect


def click_event(seq: int, **extra: Any) -> dict[str, Any]:
    event = {
        "seq": seq,
        "type": "click",
        "ts": 1732262400000 + seq,
        "url": "https://shop.example/p/42",
        "title": "Blue kettle",
        "target": {
            "tag": "button",
            "text": "Add to cart",
            "attributes": {"id": "add", "data-testid": "add-to-cart"},
            "selectors": [
                {"kind": "testid", "value": "add-to-cart", "unique": True},
                {"kind": "css", "value": "#add", "unique": True},
            ],
            "bbox": {"x": 600, "y": 370, "width": 120, "height": 32},
        },
        "x": 612,
        "y": 380,
    }
    event.update(extra)
    return event


class Api:
    def __init__(self, base_url: str, key: str):
        self.base_url = base_url
        self.key = key
        self.http = httpx.Client(base_url=base_url, timeout=30, headers={"Authorization": f"Bearer {key}"})

    def create_session(self, **body: Any) -> str:
        body.setdefault("type", "automated")
        response = self.http.post("/v1/sessions", json=body)
        assert response.status_code in (200, 201), response.text
        return str(response.json()["session_id"])

    def post_events(self, session_id: str, events: list[dict[str, Any]]) -> httpx.Response:
        return self.http.post(f"/v1/sessions/{session_id}/events", json={"events": events})

    def session(self, session_id: str) -> dict[str, Any]:
        response = self.http.get(f"/v1/sessions/{session_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def stream(self, session_id: str, *, header_auth: bool = False, open_timeout: float = 10) -> ClientConnection:
        url = self.base_url.replace("http://", "ws://") + f"/v1/sessions/{session_id}/stream"
        headers = {"Authorization": f"Bearer {self.key}"} if header_auth else None
        ws = connect(url, additional_headers=headers, open_timeout=open_timeout, max_size=2**24)
        if not header_auth:
            ws.send(json.dumps({"type": "auth", "api_key": self.key}))
        return ws


def send_frame(ws: ClientConnection, events: list[dict[str, Any]], timeout: float = 30) -> dict[str, Any]:
    ws.send(json.dumps({"type": "events", "events": events}))
    return dict(json.loads(ws.recv(timeout=timeout)))


def new_id() -> str:
    return str(uuid.uuid4())


def now_ms() -> int:
    return int(time.time() * 1000)
