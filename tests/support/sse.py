"""A small server-sent events reader for tests: reads GET /v1/live on a thread of its own and
queues (arrival time, id, event, data) as each message arrives, so a test can tell a stream
that delivers at once from one that buffers."""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = ["Message", "SseReader"]


@dataclass
class Message:
    at: float  # time.time() on arrival
    id: str | None
    event: str
    data: Any


class SseReader:
    def __init__(self, base_url: str, key: str, *, last_event_id: str | None = None, params: dict[str, Any] | None = None):
        self.messages: queue.Queue[Message] = queue.Queue()
        self.status: int | None = None
        self.headers: httpx.Headers | None = None
        self._stop = threading.Event()
        headers = {"Authorization": f"Bearer {key}", "Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self._client = httpx.Client(base_url=base_url, timeout=httpx.Timeout(30, read=60))
        self._args = {"headers": headers, "params": params or {}}
        self._opened = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="sse-reader")
        self._thread.start()
        if not self._opened.wait(30):
            raise AssertionError("the live stream did not answer within 30 s")

    def _run(self) -> None:
        try:
            with self._client.stream("GET", "/v1/live", **self._args) as response:
                self.status, self.headers = response.status_code, response.headers
                self._opened.set()
                block: list[str] = []
                for line in response.iter_lines():
                    if self._stop.is_set():
                        return
                    if line:
                        block.append(line)
                        continue
                    self._dispatch(block)
                    block = []
        except httpx.HTTPError:
            pass
        finally:
            self._opened.set()

    def _dispatch(self, block: list[str]) -> None:
        fields: dict[str, str] = {}
        for line in block:
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value
        if "data" in fields:
            self.messages.put(Message(time.time(), fields.get("id"), fields.get("event", "message"),
                                      json.loads(fields["data"])))

    def next(self, timeout: float = 10) -> Message:
        return self.messages.get(timeout=timeout)

    def until(self, predicate: Any, timeout: float = 10) -> Message:
        """The first message (skipping others) for which predicate(message) is true."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no matching live message in time")
            try:
                message = self.messages.get(timeout=left)
            except queue.Empty:
                raise AssertionError("no matching live message in time") from None
            if predicate(message):
                return message

    def close(self) -> None:
        self._stop.set()
        self._client.close()
