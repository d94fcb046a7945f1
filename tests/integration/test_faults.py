"""Faults during streaming: a killed shard actor, a stopped PostgreSQL. Afterwards every acked
event is stored exactly once and the service answers again without a restart of tracemill."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import httpx
import ray
from websockets.exceptions import ConnectionClosed

from actors.ingest.shard_pool import ShardRouter
from tests.support.stack import run_db
from tests.support.client import Api, click_event
from cluster.doubles.net import wait_for


class ResendingClient:
    """What PROTOCOL.md asks of a client: keep unacked events, resend them after any failure."""

    def __init__(self, api: Api, sid: str, batch: int):
        self.api, self.sid, self.batch = api, sid, batch
        self.acked_through = -1
        self.acks = 0
        self.failures = 0

    def run(self, total: int, deadline_s: float) -> None:
        deadline = time.monotonic() + deadline_s
        while self.acked_through < total - 1 and time.monotonic() < deadline:
            try:
                with self.api.stream(self.sid) as ws:
                    while self.acked_through < total - 1 and time.monotonic() < deadline:
                        start = self.acked_through + 1
                        events = [click_event(s) for s in range(start, min(start + self.batch, total))]
                        ws.send(json.dumps({"type": "events", "events": events}))
                        answer = json.loads(ws.recv(timeout=30))
                        if answer["type"] == "ack":
                            self.acked_through = max(self.acked_through, answer["acked_through"])
                            self.acks += 1
                        else:  # error or slow_down: back off, then resend from acked_through
                            self.failures += 1
                            time.sleep(0.2)
            except (ConnectionClosed, OSError, TimeoutError):
                self.failures += 1
                time.sleep(0.2)
                self.acked_through = max(self.acked_through, self.api.session(self.sid)["acked_through"])


def assert_stored_exactly_once(stack: Any, sid: str, acked_through: int) -> None:
    rows = run_db(stack, "SELECT seq FROM interactions WHERE session_id = $1 ORDER BY seq", sid)
    seqs = [r["seq"] for r in rows]
    assert len(seqs) == len(set(seqs))
    assert seqs[: acked_through + 1] == list(range(acked_through + 1))  # every acked seq is there
    count = run_db(stack, "SELECT event_count, acked_through FROM sessions WHERE session_id = $1", sid)[0]
    assert count["acked_through"] >= acked_through and count["event_count"] == len(seqs)


def test_killed_shard_loses_no_acked_event(api: Api, stack: Any) -> None:
    sid = api.create_session()
    shard = ShardRouter(stack.settings).for_session(uuid.UUID(sid))
    pid_before = ray.get(shard.ping.remote())["pid"]
    client = ResendingClient(api, sid, batch=25)
    total = 2000
    streaming = threading.Thread(target=client.run, args=(total, 120), daemon=True)
    streaming.start()
    wait_for(lambda: client.acked_through >= 300, timeout_s=60, what="the stream to get going")
    ray.kill(shard, no_restart=False)  # mid-stream: Ray restarts it, its memory is gone
    streaming.join(timeout=150)
    assert not streaming.is_alive()
    assert client.acked_through == total - 1, f"stalled at {client.acked_through}"
    assert ray.get(shard.ping.remote())["pid"] != pid_before
    assert_stored_exactly_once(stack, sid, client.acked_through)
    assert api.session(sid)["acked_through"] == total - 1


def test_readyz_follows_postgres_down_and_back(api: Api, stack: Any) -> None:
    sid = api.create_session()
    assert api.post_events(sid, [click_event(0)]).json()["acked_through"] == 0
    stack.postgres.stop()
    try:
        def not_ready() -> dict[str, Any] | None:
            r = httpx.get(api.base_url + "/readyz", timeout=10)
            return r.json() if r.status_code == 503 else None

        body = wait_for(not_ready, timeout_s=30, what="/readyz to report the database down")
        assert body["error"]["code"] == "dependency_unavailable"
        assert [d["dependency"] for d in body["error"]["details"]] == ["database"]
        during = api.post_events(sid, [click_event(1)])
        assert during.status_code == 503 and "Retry-After" in during.headers
    finally:
        stack.postgres.start()
    wait_for(lambda: httpx.get(api.base_url + "/readyz", timeout=10).status_code == 200,
             timeout_s=60, what="/readyz to recover")
    ack = wait_for(lambda: api.post_events(sid, [click_event(1)]).json().get("acked_through") == 1,
                   timeout_s=30, what="events to be accepted again")
    assert ack
    assert_stored_exactly_once(stack, sid, 1)
