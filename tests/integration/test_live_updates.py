"""GET /v1/live on the real stack: server-sent events come through Ray Serve as they happen
(not buffered), a session's creation and finalisation arrive within a second of the database
change, a reconnect with Last-Event-ID catches up on what was missed, another organisation's
stream stays silent, and bad requests get the one error shape."""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.support.client import Api, click_event
from tests.support.sessions import poor_session, record, shop_session, wait_terminal
from tests.support.sse import SseReader
from tests.support.stack import make_key, run_db


class Org:
    def __init__(self, stack: Any, name: str):
        self.org_id = uuid.uuid4()
        run_db(stack, "INSERT INTO organizations (org_id, name) VALUES ($1, $2)", self.org_id, f"{name}-{self.org_id}")
        self.api = Api(stack.endpoint, make_key(stack, ["ingest", "read"], org_id=self.org_id))  # records
        self.key = make_key(stack, ["read"], org_id=self.org_id)  # watches: the organisation's sessions


@pytest.fixture(scope="module")
def ours(stack: Any) -> Org:
    return Org(stack, "live")


@pytest.fixture(scope="module")
def theirs(stack: Any) -> Org:
    return Org(stack, "live-other")


def delay_s(message: Any) -> float:
    return message.at - datetime.fromisoformat(message.data["at"]).timestamp()


def test_creation_and_finalisation_arrive_live_and_only_to_the_organisation(stack: Any, ours: Org, theirs: Org) -> None:
    mine, other = SseReader(stack.endpoint, ours.key), SseReader(stack.endpoint, theirs.key)
    try:
        assert mine.status == 200 and mine.headers is not None
        assert mine.headers["content-type"].startswith("text/event-stream")
        assert mine.headers["cache-control"] == "no-store"
        ready = mine.next(timeout=5)  # before any event: the stream is not held back by Serve
        assert ready.event == "live.ready" and ready.id is not None
        other.next(timeout=5)

        sid = ours.api.create_session(type="human", task="live kettle")
        created = mine.until(lambda m: m.data.get("session_id") == sid, timeout=5)
        assert created.event == "session.created" and created.data["status"] == "recording"
        assert created.data["quality"] is None and int(created.id) > int(ready.id)
        print(f"session.created arrived {delay_s(created) * 1000:.0f} ms after the insert")

        events, shots = shop_session(40, 2)
        good = record(ours.api, events, shots, task="live kettle")
        view = wait_terminal(ours.api, good)
        finalized = mine.until(lambda m: m.event == "session.finalized" and m.data["session_id"] == good, timeout=10)
        assert finalized.data["status"] == view["status"] and finalized.data["quality"] == view["quality"]["overall"]
        print(f"session.finalized arrived {delay_s(finalized) * 1000:.0f} ms after the status change")

        time.sleep(0.5)
        seen_by_other = []
        while not other.messages.empty():
            seen_by_other.append(other.next())
        assert not [m for m in seen_by_other if m.data.get("session_id") in (sid, good)], seen_by_other
    finally:
        mine.close()
        other.close()


def test_a_reconnect_catches_up_with_last_event_id(stack: Any, ours: Org) -> None:
    first = SseReader(stack.endpoint, ours.key)
    start = first.next(timeout=5)
    first.close()
    missed = [ours.api.create_session(type="automated", task=f"while away {i}") for i in range(3)]
    poor = record(ours.api, poor_session(), [])
    assert wait_terminal(ours.api, poor)["status"] in ("ready", "rejected")

    again = SseReader(stack.endpoint, ours.key, last_event_id=str(start.id))
    try:
        got: dict[str, list[str]] = {}
        ids: list[int] = []
        deadline = time.monotonic() + 10
        while not (set(missed) | {poor}) <= set(got) or "session.finalized" not in got.get(poor, []):
            assert time.monotonic() < deadline, got
            message = again.next(timeout=5)
            if message.event == "live.ready":
                continue
            ids.append(int(message.id))
            got.setdefault(message.data["session_id"], []).append(message.event)
        assert ids == sorted(ids) and len(ids) == len(set(ids))
        assert all(got[s] == ["session.created"] for s in missed)
        assert got[poor] == ["session.created", "session.finalized"]
    finally:
        again.close()

    # ?since= does the same for a client that cannot set the header.
    since = SseReader(stack.endpoint, ours.key, params={"since": start.id})
    try:
        # (Events just before the position may come again: the overlap for late commits.)
        message = since.until(lambda m: m.event != "live.ready" and int(m.id) > int(start.id), timeout=5)
        assert message.data["session_id"] in missed
    finally:
        since.close()


def test_a_reconnect_does_not_replay_a_deleted_session(stack: Any, ours: Org) -> None:
    first = SseReader(stack.endpoint, ours.key)
    start = first.next(timeout=5)
    first.close()
    kept, gone, last = (ours.api.create_session(type="automated", task=f"live delete {name}")
                        for name in ("kept", "gone", "last"))
    admin = Api(stack.endpoint, make_key(stack, ["admin"], org_id=ours.org_id))
    assert admin.http.delete(f"/v1/sessions/{gone}").status_code == 202  # its log rows stay until the purge

    again = SseReader(stack.endpoint, ours.key, last_event_id=str(start.id))
    try:
        replayed: list[str | None] = []  # the catch-up comes in id order: `gone` would come before `last`
        while last not in replayed:
            replayed.append(again.next(timeout=5).data.get("session_id"))
        assert kept in replayed and gone not in replayed, replayed
    finally:
        again.close()


def test_a_deleted_session_reaching_a_final_status_is_not_announced(stack: Any, ours: Org) -> None:
    sid = ours.api.create_session(type="automated", task="live delete in flight")
    admin = Api(stack.endpoint, make_key(stack, ["admin"], org_id=ours.org_id))
    assert admin.http.delete(f"/v1/sessions/{sid}").status_code == 202
    # A finalisation in flight when the delete came still writes its final status (migration 0024).
    run_db(stack, "UPDATE sessions SET status = 'failed' WHERE session_id = $1", uuid.UUID(sid))
    kinds = run_db(stack, "SELECT kind FROM live_events WHERE session_id = $1 ORDER BY event_id", uuid.UUID(sid))
    assert [r["kind"] for r in kinds] == ["session.created"]


def test_bad_requests_have_the_one_shape(stack: Any, ours: Org) -> None:
    url = f"{stack.endpoint}/v1/live"
    ingest_only = make_key(stack, ["ingest"], org_id=ours.org_id)
    for headers, params, status, code in (
        ({}, {}, 401, "unauthenticated"),
        ({"Authorization": "Bearer tm_wrong"}, {}, 401, "unauthenticated"),
        ({"Authorization": f"Bearer {ingest_only}"}, {}, 403, "forbidden"),
        ({"Authorization": f"Bearer {ours.key}"}, {"since": "-3"}, 422, "invalid_input"),
        ({"Authorization": f"Bearer {ours.key}"}, {"key": ours.key}, 422, "invalid_input"),
        ({"Authorization": f"Bearer {ours.key}", "Last-Event-ID": "abc"}, {}, 422, "invalid_input"),
    ):
        answer = httpx.get(url, headers=headers, params=params, timeout=10)
        assert answer.status_code == status, (headers, params, answer.text)
        error = answer.json()["error"]
        assert error["code"] == code and set(error) == {"code", "message", "details", "request_id"}
        assert ours.key not in answer.text


def test_the_events_log_is_written_in_the_same_transaction(stack: Any, ours: Org) -> None:
    sid = ours.api.create_session(type="automated")
    assert ours.api.post_events(sid, [click_event(0)]).status_code == 200
    rows = run_db(stack, "SELECT kind, status, org_id FROM live_events WHERE session_id = $1 ORDER BY event_id",
                  uuid.UUID(sid))
    # Counters moved (an UPDATE of the row) but no status changed: still one event.
    assert [(r["kind"], r["status"], r["org_id"]) for r in rows] == [("session.created", "recording", ours.org_id)]


def test_openapi_documents_the_stream_and_the_replay(stack: Any) -> None:
    schema = httpx.get(f"{stack.endpoint}/openapi.json").json()
    live = schema["paths"]["/v1/live"]["get"]
    assert "text/event-stream" in live["responses"]["200"]["content"]
    assert {"401", "403", "422", "429", "503"} <= set(live["responses"])
    assert {p["name"] for p in live["parameters"]} >= {"since", "Last-Event-ID"}
    replay = schema["paths"]["/v1/sessions/{session_id}/replay"]["get"]
    assert replay["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/ReplayBundle")
