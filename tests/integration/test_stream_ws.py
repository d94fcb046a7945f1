"""The WebSocket stream: auth, acks in order, resends across transports and reconnects."""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.support.stack import make_key, run_db
from tests.support.client import Api, click_event, new_id, send_frame


def ws_url(api: Api, sid: str) -> str:
    return api.base_url.replace("http://", "ws://") + f"/v1/sessions/{sid}/stream"


def test_stream_acks_in_order_with_first_frame_auth(api: Api, stack: Any) -> None:
    sid = api.create_session()
    with api.stream(sid) as ws:
        # Several frames in flight: acks come back one per frame, in order.
        for start in range(0, 30, 10):
            ws.send(json.dumps({"type": "events", "events": [click_event(s) for s in range(start, start + 10)]}))
        acks = [json.loads(ws.recv(timeout=30)) for _ in range(3)]
    assert [a["type"] for a in acks] == ["ack"] * 3
    # One ack per frame; frames committed together may report the same, later acked_through.
    through = [a["acked_through"] for a in acks]
    assert through == sorted(through) and through[0] >= 9 and through[-1] == 29
    assert all(a["accepted"] == 10 and a["duplicates"] == 0 for a in acks)
    count = run_db(stack, "SELECT count(*) AS n FROM interactions WHERE session_id = $1", sid)[0]["n"]
    assert count == 30


def test_header_auth_works_too(api: Api) -> None:
    sid = api.create_session()
    with api.stream(sid, header_auth=True) as ws:
        ack = send_frame(ws, [click_event(0)])
    assert ack["type"] == "ack" and ack["acked_through"] == 0


def test_resends_over_http_ws_and_reconnect_are_stored_once(api: Api, stack: Any) -> None:
    sid = api.create_session()
    assert api.post_events(sid, [click_event(s) for s in range(0, 10)]).json()["accepted"] == 10
    with api.stream(sid) as ws:
        ack = send_frame(ws, [click_event(s) for s in range(5, 15)])
        assert (ack["accepted"], ack["duplicates"], ack["acked_through"]) == (5, 5, 14)
    # Reconnect: read acked_through, resend everything from an older point, continue.
    acked = api.session(sid)["acked_through"]
    assert acked == 14
    with api.stream(sid) as ws:
        ack = send_frame(ws, [click_event(s) for s in range(acked - 4, acked + 6)])
        assert (ack["accepted"], ack["duplicates"], ack["acked_through"]) == (5, 5, 19)
    ack = api.post_events(sid, [click_event(s) for s in range(0, 20)]).json()
    assert (ack["accepted"], ack["duplicates"]) == (0, 20)
    rows = run_db(stack, "SELECT count(*) AS n, count(DISTINCT seq) AS d FROM interactions WHERE session_id=$1", sid)
    assert rows[0]["n"] == rows[0]["d"] == 20


def test_bad_frames_get_error_frames_and_the_stream_goes_on(api: Api, stack: Any) -> None:
    sid = api.create_session()
    with api.stream(sid) as ws:
        ws.send("{not json")
        err = json.loads(ws.recv(timeout=30))
        assert err["type"] == "error" and err["error"]["code"] == "malformed_json"
        ws.send(json.dumps({"type": "events", "events": [click_event(0), {"seq": 1, "type": "teleport", "ts": 1732262400000}]}))
        err = json.loads(ws.recv(timeout=30))
        assert err["type"] == "error" and err["error"]["code"] == "invalid_input"
        assert [(d["index"], d["seq"]) for d in err["error"]["details"]] == [(1, 1)]
        ws.send(json.dumps({"type": "subscribe"}))
        assert json.loads(ws.recv(timeout=30))["error"]["code"] == "invalid_input"
        ack = send_frame(ws, [click_event(0)])
        assert ack["type"] == "ack" and ack["accepted"] == 1
    # Nothing of the rejected batch was stored: seq 0 arrived only with the last frame.
    assert run_db(stack, "SELECT count(*) AS n FROM interactions WHERE session_id=$1", sid)[0]["n"] == 1


def _closed_with(api: Api, sid: str, first_frame: str | None) -> tuple[int, dict[str, Any] | None]:
    with connect(ws_url(api, sid), open_timeout=10) as ws:
        if first_frame is not None:
            ws.send(first_frame)
        message = None
        try:
            message = json.loads(ws.recv(timeout=15))
            ws.recv(timeout=15)
        except ConnectionClosed:
            pass
        return ws.close_code or 0, message


def test_stream_refusals_close_with_codes(api: Api, stack: Any) -> None:
    sid = api.create_session()
    code, msg = _closed_with(api, sid, json.dumps({"type": "auth", "api_key": "tm_wrong_wrong_wrong_wrong"}))
    assert code == 4401 and msg is not None and msg["error"]["code"] == "unauthenticated"
    code, msg = _closed_with(api, sid, json.dumps({"type": "events", "events": []}))
    assert code == 4401
    read_only = make_key(stack, ["read"])
    code, msg = _closed_with(api, sid, json.dumps({"type": "auth", "api_key": read_only}))
    assert code == 4403 and msg is not None and msg["error"]["code"] == "forbidden"
    code, _ = _closed_with(api, new_id(), json.dumps({"type": "auth", "api_key": api.key}))
    assert code == 4404
    api.http.post(f"/v1/sessions/{sid}/finish")
    code, msg = _closed_with(api, sid, json.dumps({"type": "auth", "api_key": api.key}))
    assert code == 4409 and msg is not None and msg["error"]["code"] == "session_closed"


@pytest.mark.timeout(60)
def test_no_auth_frame_closes_after_the_deadline(api: Api, stack: Any) -> None:
    sid = api.create_session()
    code, msg = _closed_with(api, sid, None)
    assert code == 4401 and msg is not None and msg["error"]["code"] == "unauthenticated"
