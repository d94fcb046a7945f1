"""Live updates without a stack: the SSE framing, the stream position a request asks for, and
the NOTIFY payloads the listener accepts (anything else is ignored, never raised)."""

from __future__ import annotations

import json
import uuid

import pytest
from starlette.requests import Request

from actors.errors import InvalidInput
from actors.storage.live_repo import LiveEvent, parse_notification
from configs.live import LiveSettings
from serve_app.live_api import format_event, parse_since

ORG = uuid.uuid4()
SID = uuid.uuid4()


def request(query: str = "", last_event_id: str | None = None) -> Request:
    headers = [(b"last-event-id", last_event_id.encode())] if last_event_id is not None else []
    return Request({"type": "http", "method": "GET", "path": "/v1/live", "query_string": query.encode(),
                    "headers": headers})


def test_an_event_is_one_sse_message_with_its_id() -> None:
    event = LiveEvent(42, ORG, "session.finalized", SID, "ready", 0.8125, "2026-12-07T21:00:00+00:00")
    text = format_event(event).decode()
    assert text.endswith("\n\n") and text.count("\n\n") == 1
    lines = text.strip().split("\n")
    assert lines[0] == "id: 42" and lines[1] == "event: session.finalized"
    assert lines[2].startswith("data: ") and len(lines) == 3
    assert json.loads(lines[2][6:]) == {"session_id": str(SID), "status": "ready", "quality": 0.8125,
                                        "at": "2026-12-07T21:00:00+00:00"}


def test_the_stream_position_comes_from_last_event_id_then_since() -> None:
    assert parse_since(request()) is None
    assert parse_since(request("since=7")) == 7
    assert parse_since(request("since=7", last_event_id="9")) == 9  # a reconnect wins
    assert parse_since(request("", last_event_id="")) is None


@pytest.mark.parametrize("query,header,field", [
    ("since=-1", None, "query.since"), ("since=abc", None, "query.since"), ("since=1e3", None, "query.since"),
    ("since=" + "9" * 19, None, "query.since"), ("", "x1", "header.last-event-id"), ("limit=3", None, "query.limit"),
])
def test_a_bad_position_or_parameter_is_refused(query: str, header: str | None, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_since(request(query, header))
    assert caught.value.details and caught.value.details[0]["field"] == field


def test_notifications_of_ours_parse_and_others_are_ignored() -> None:
    good = {"event_id": 5, "org_id": str(ORG), "kind": "session.created", "session_id": str(SID),
            "status": "recording", "quality": None, "at": "2026-12-07T21:00:00.1+00:00"}
    event = parse_notification(json.dumps(good))
    assert event == LiveEvent(5, ORG, "session.created", SID, "recording", None, good["at"])
    for bad in ("", "not json", "[]", json.dumps({**good, "kind": "session.deleted"}),
                json.dumps({**good, "org_id": "nope"}), json.dumps({k: v for k, v in good.items() if k != "event_id"})):
        assert parse_notification(bad) is None, bad


def test_live_settings_are_strict() -> None:
    assert LiveSettings().max_stream_s == 300
    with pytest.raises(ValueError):
        LiveSettings(heartbeat_s=0)
    with pytest.raises(ValueError):
        LiveSettings.model_validate({"unknown": 1})
