"""Sessions and events over HTTP against the real stack: round trips, idempotency, gaps."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.support.stack import run_db
from tests.support.client import Api, click_event, new_id


def stored_seqs(stack: Any, session_id: str) -> list[int]:
    rows = run_db(stack, "SELECT seq FROM interactions WHERE session_id = $1 ORDER BY seq", session_id)
    return [r["seq"] for r in rows]


def test_session_round_trip(api: Api, stack: Any) -> None:
    sid = new_id()
    body = {"session_id": sid, "type": "human", "task": "buy a kettle",
            "client": {"name": "pytest", "version": "1"}, "viewport": {"width": 1280, "height": 800},
            "started_at": "2026-11-22T10:00:00Z", "metadata": {"k": "v"}}
    first = api.http.post("/v1/sessions", json=body)
    assert first.status_code == 201, first.text
    assert first.json() == {"session_id": sid, "status": "recording"}
    again = api.http.post("/v1/sessions", json=body)
    assert again.status_code == 200 and again.json() == first.json()

    ack = api.post_events(sid, [click_event(i) for i in range(5)])
    assert ack.status_code == 200, ack.text
    assert ack.json() == {"acked_through": 4, "accepted": 5, "duplicates": 0, "gaps": []}

    view = api.session(sid)
    assert view["session_id"] == sid and view["type"] == "human" and view["status"] == "recording"
    assert view["event_count"] == 5 and view["acked_through"] == 4
    assert view["screenshot_count"] == 0 and view["quality"] is None and view["archive"] is None
    row = run_db(stack, "SELECT type, url, target, payload FROM interactions WHERE session_id=$1 AND seq=3", sid)[0]
    assert row["type"] == "click" and row["url"] == "https://shop.example/p/42"
    assert json.loads(row["target"])["attributes"]["data-testid"] == "add-to-cart"
    assert json.loads(row["payload"]) == {"x": 612, "y": 380, "title": "Blue kettle"}


def test_server_makes_an_id_and_create_conflicts(api: Api, other_org_api: Api) -> None:
    made = api.http.post("/v1/sessions", json={"type": "automated"})
    assert made.status_code == 201
    sid = made.json()["session_id"]
    different = api.http.post("/v1/sessions", json={"session_id": sid, "type": "human"})
    assert different.status_code == 409 and different.json()["error"]["code"] == "session_conflict"
    stolen = other_org_api.http.post("/v1/sessions", json={"session_id": sid, "type": "automated"})
    assert stolen.status_code == 409
    assert other_org_api.http.get(f"/v1/sessions/{sid}").status_code == 404


def test_duplicates_and_gaps(api: Api, stack: Any) -> None:
    sid = api.create_session()
    ack = api.post_events(sid, [click_event(s) for s in (0, 1, 2, 5, 6, 9)]).json()
    assert ack == {"acked_through": 2, "accepted": 6, "duplicates": 0, "gaps": [[3, 4], [7, 8]]}
    ack = api.post_events(sid, [click_event(s) for s in (1, 2, 3, 3)]).json()
    assert ack["accepted"] == 1 and ack["duplicates"] == 3 and ack["acked_through"] == 3
    assert ack["gaps"] == [[4, 4], [7, 8]]
    ack = api.post_events(sid, [click_event(s) for s in (4, 7, 8)]).json()
    assert ack == {"acked_through": 9, "accepted": 3, "duplicates": 0, "gaps": []}
    assert stored_seqs(stack, sid) == list(range(10))
    view = api.session(sid)
    assert view["event_count"] == 10 and view["duplicate_count"] == 3


def test_finish_closes_the_session(api: Api) -> None:
    sid = api.create_session()
    api.post_events(sid, [click_event(0)])
    done = api.http.post(f"/v1/sessions/{sid}/finish", json={"last_seq": 0, "outcome": "success"})
    assert done.status_code == 202 and done.json() == {"status": "finalizing"}
    twice = api.http.post(f"/v1/sessions/{sid}/finish")
    assert twice.status_code == 202 and twice.json() == {"status": "finalizing"}
    late = api.post_events(sid, [click_event(1)])
    assert late.status_code == 409 and late.json()["error"]["code"] == "session_closed"
    view = api.session(sid)
    assert view["status"] == "finalizing" and view["event_count"] == 1 and view["outcome"] == "success"


def test_request_id_is_echoed(api: Api) -> None:
    response = api.http.get("/v1/sessions/" + new_id(), headers={"X-Request-ID": "trace-me-123"})
    assert response.status_code == 404
    assert response.headers.get_list("x-request-id") == ["trace-me-123"]
    assert response.json()["error"]["request_id"] == "trace-me-123"
    assert httpx.get(api.base_url + "/healthz").headers.get("x-request-id")


def test_health_metrics_and_docs(api: Api) -> None:
    assert httpx.get(api.base_url + "/healthz").status_code == 200
    ready = httpx.get(api.base_url + "/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}
    sid = api.create_session()
    api.post_events(sid, [click_event(0), click_event(1)])
    metrics = httpx.get(api.base_url + "/metrics")
    assert metrics.status_code == 200 and "tracemill_events_accepted_total" in metrics.text
    spec = httpx.get(api.base_url + "/openapi.json").json()
    assert "/v1/sessions/{session_id}/events" in spec["paths"]
    assert "EventsBatch" in spec["components"]["schemas"]
    assert httpx.get(api.base_url + "/docs").status_code == 200
