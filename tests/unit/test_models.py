"""Unit tests of the session, finish and response bodies in serve_app.bodies."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

import pytest

from actors.errors import InvalidInput
from actors.ingest.events import EVENT_TYPES
from serve_app.bodies import (
    AckResult, ErrorBody, ErrorResponse, EventsBatch, FinishAccepted, FinishRequest,
    ScreenshotStored, SessionCreated, SessionView, parse_finish,
    parse_session_create,
)
from configs.settings import IngestLimits

LIMITS = IngestLimits()
SID = "6f1c0d3a-2b1e-4f7a-9c3d-1a2b3c4d5e6f"
TS = 1732262400123
TS_UTC = datetime(2024, 11, 22, 8, 0, 0, 123000, tzinfo=timezone.utc)

FULL_SESSION: dict[str, Any] = {
    "session_id": SID, "type": "hybrid", "task": "buy a blue kettle under $30",
    "client": {"name": "tracemill-extension", "version": "1.2.0"},
    "user_agent": "Mozilla/5.0 (X11; Linux x86_64)", "viewport": {"width": 1280, "height": 800},
    "started_at": "2024-11-22T09:00:00.123+01:00", "metadata": {"free": ["form", 1, None, True]},
}


def session_problems(raw: object, limits: IngestLimits = LIMITS) -> list[dict[str, Any]]:
    with pytest.raises(InvalidInput) as caught:
        parse_session_create(raw, limits)
    return caught.value.details


def finish_problems(raw: object) -> list[dict[str, Any]]:
    with pytest.raises(InvalidInput) as caught:
        parse_finish(raw)
    return caught.value.details


# --------------------------------------------------------------------------- sessions


def test_minimal_session() -> None:
    body = parse_session_create({"type": "human"}, LIMITS)
    assert body.type == "human" and body.session_id is None and body.started_at is None


def test_full_session_is_normalised() -> None:
    body = parse_session_create(FULL_SESSION, LIMITS)
    assert body.session_id == UUID(SID)
    assert body.started_at == TS_UTC and body.started_at.tzinfo is not None
    assert body.client is not None and body.client.version == "1.2.0"
    assert body.viewport is not None and (body.viewport.width, body.viewport.height) == (1280, 800)
    assert body.metadata == FULL_SESSION["metadata"]
    dumped = json.loads(body.model_dump_json())
    assert dumped["started_at"] == "2024-11-22T08:00:00.123000Z" and dumped["session_id"] == SID


def test_session_started_at_as_epoch_ms() -> None:
    body = parse_session_create({"type": "automated", "started_at": TS}, LIMITS)
    assert body.started_at == TS_UTC


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"type": None}, "type"),
        ({"type": "robot"}, "type"),
        ({"session_id": "not-a-uuid"}, "session_id"),
        ({"session_id": 42}, "session_id"),
        ({"task": "x" * 4001}, "task"),
        ({"task": "a\x00b"}, "task"),
        ({"user_agent": "x" * 1025}, "user_agent"),
        ({"client": {"name": "x"}}, "client.version"),
        ({"client": {"name": "x", "version": "1", "build": 7}}, "client.build"),
        ({"viewport": {"width": 0, "height": 800}}, "viewport.width"),
        ({"viewport": {"width": 1280, "height": 100_001}}, "viewport.height"),
        ({"viewport": {"width": "1280", "height": 800}}, "viewport.width"),
        ({"started_at": 1732262400}, "started_at"),
        ({"started_at": "2024-11-22T09:00:00"}, "started_at"),
        ({"metadata": ["not", "an", "object"]}, "metadata"),
        ({"metadata": {"n": float("nan")}}, "metadata.n"),
        ({"metadata": {"n": ["\ud800"]}}, "metadata.n"),
        ({"metadata": {"secret\x00key": 1}}, "metadata"),
        ({"metadata": {"k" * 9000: 1}}, "metadata"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_session_fields(change: dict[str, Any], field: str) -> None:
    raw = {**FULL_SESSION, **change}
    if "type" in change and change["type"] is None:
        del raw["type"]
    details = session_problems(raw)
    assert [d["field"] for d in details] == [field]
    assert all(set(d) == {"field", "error"} for d in details)


def test_bad_uuid_message_does_not_echo_the_input() -> None:
    [detail] = session_problems({"type": "human", "session_id": "zzz-secret"})
    assert "z" not in detail["error"] and "secret" not in detail["error"]


def test_bad_metadata_key_is_not_echoed() -> None:
    [detail] = session_problems({"type": "human", "metadata": {"secret\x00key": 1}})
    assert "secret" not in detail["field"] + detail["error"]


def test_metadata_size_follows_the_limit() -> None:
    limits = IngestLimits(max_metadata_bytes=256)
    assert parse_session_create({"type": "human", "metadata": {"k": "v" * 200}}, limits)
    [detail] = session_problems({"type": "human", "metadata": {"k": "v" * 300}}, limits)
    assert detail["field"] == "metadata" and "256" in detail["error"]


def test_every_session_problem_is_reported_together() -> None:
    limits = IngestLimits(max_metadata_bytes=256)
    details = session_problems({"type": "robot", "metadata": {"k": "v" * 300}}, limits)
    assert sorted(d["field"] for d in details) == ["metadata", "type"]


@pytest.mark.parametrize("raw", [None, [], "human", 3])
def test_session_body_must_be_an_object(raw: object) -> None:
    assert session_problems(raw) == [{"field": None, "error": "must be a JSON object"}]


# --------------------------------------------------------------------------- finish


def test_finish_without_a_body_or_fields() -> None:
    assert parse_finish(None) == FinishRequest() == parse_finish({})


def test_full_finish() -> None:
    body = parse_finish({"ended_at": TS, "last_seq": 41, "outcome": "abandoned"})
    assert (body.ended_at, body.last_seq, body.outcome) == (TS_UTC, 41, "abandoned")
    assert parse_finish({"last_seq": -1}).last_seq == -1  # recorded nothing


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"last_seq": -2}, "last_seq"),
        ({"last_seq": True}, "last_seq"),
        ({"last_seq": "3"}, "last_seq"),
        ({"last_seq": 2.0}, "last_seq"),
        ({"outcome": "done"}, "outcome"),
        ({"ended_at": "soon"}, "ended_at"),
        ({"reason": "tired"}, "reason"),
        ([1], None),
    ],
)
def test_bad_finish(raw: object, field: str | None) -> None:
    assert [d["field"] for d in finish_problems(raw)] == [field]


# --------------------------------------------------------------------------- responses


def test_error_response_has_the_protocol_shape() -> None:
    detail = {"index": 1, "seq": 1, "field": "x", "error": "bad"}
    error = ErrorBody(code="invalid_input", message="1 of 2 events are invalid",
                      details=[detail], request_id="req-1")
    body = ErrorResponse(error=error)
    assert body.model_dump() == {"error": {
        "code": "invalid_input", "message": "1 of 2 events are invalid",
        "details": [detail], "request_id": "req-1",
    }}
    assert ErrorBody(code="not_found", message="no such session").details == []


def test_ack_result_serialises_gaps_as_pairs() -> None:
    ack = AckResult(acked_through=4, accepted=3, duplicates=1, gaps=[(6, 8), (10, 10)])
    assert json.loads(ack.model_dump_json()) == {
        "acked_through": 4, "accepted": 3, "duplicates": 1, "gaps": [[6, 8], [10, 10]]}


def test_small_response_bodies() -> None:
    assert SessionCreated(session_id=UUID(SID), status="recording").model_dump(mode="json") == {
        "session_id": SID, "status": "recording"}
    assert FinishAccepted(status="finalizing").model_dump() == {"status": "finalizing"}
    stored = ScreenshotStored(screenshot_id="s-1", bytes=1234)
    assert stored.model_dump() == {"screenshot_id": "s-1", "bytes": 1234}


def test_session_view_keeps_nulls_until_scored_and_archived() -> None:
    view = SessionView(
        session_id=UUID(SID), type="human", status="ready", task=None, event_count=10,
        screenshot_count=2, acked_through=9, quality=None, archive=None, created_at=TS_UTC,
        started_at=TS_UTC, ended_at=None, outcome="success",
    )
    dumped = json.loads(view.model_dump_json())
    assert dumped["quality"] is None and dumped["archive"] is None and dumped["acked_through"] == 9
    with pytest.raises(ValueError):
        SessionView.model_validate({**dumped, "status": "done"})


def test_events_batch_documents_every_event_kind() -> None:
    schema = EventsBatch.model_json_schema()
    mapping = schema["properties"]["events"]["items"]["discriminator"]["mapping"]
    assert set(mapping) == set(EVENT_TYPES)
