"""The session list's query: validation of every parameter, parameterised SQL, cursors; the
trends query's window; the review transitions. No database: the SQL is checked as text."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from actors.errors import InvalidInput
from actors.storage import review_repo, trends_repo
from actors.storage.search_repo import SessionQuery, decode_cursor, encode_cursor, list_sql
from serve_app.analytics_api import TrendsQuery

ORG = uuid.UUID("00000000-0000-0000-0000-000000000001")


def _placeholders(sql: str) -> set[int]:
    return {int(n) for n in re.findall(r"\$(\d+)", sql)}


@pytest.mark.parametrize("params", [
    {"colour": "red"},                               # unknown filter
    {"status": "done"},
    {"type": "robot"},
    {"quality_min": "1.5"},
    {"quality_min": "nan"},
    {"quality_min": "0.8", "quality_max": "0.2"},    # impossible range
    {"since": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00Z"},
    {"since": "2026-12-01T00:00:00"},                # no timezone
    {"since": "yesterday"},
    {"frustration": "maybe"},
    {"key_id": "not-a-uuid"},
    {"review_state": "open"},
    {"intent": "navigate"},
    {"site": "shop.example/path"},
    {"q": "x" * 201},                                # too long
    {"q": "!!! ---"},                                # no word to search for
    {"sort": "-title"},
    {"limit": "0"},
    {"limit": "101"},
    {"limit": "ten"},
    {"cursor": ""},
])
def test_bad_parameters_are_refused(params: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        SessionQuery.model_validate(params)


def test_good_parameters_parse_from_query_strings() -> None:
    q = SessionQuery.model_validate({
        "status": "ready", "type": "human", "quality_min": "0.2", "quality_max": "0.9",
        "since": "2026-12-01T00:00:00Z", "until": "2026-12-02T00:00:00+01:00", "site": "Shop.Example",
        "intent": "checkout", "frustration": "true", "review_state": "pending", "q": "blue kettle",
        "sort": "quality", "limit": "100", "key_id": str(ORG)})
    assert q.limit == 100 and q.frustration is True and q.since.tzinfo is not None
    page, total, args, total_args = list_sql(q, ORG)
    # Every value is a bind parameter, numbered densely, and none appears in the SQL text.
    assert _placeholders(page) == set(range(1, len(args) + 1))
    assert _placeholders(total) == set(range(1, len(total_args) + 1))
    for text in ("blue kettle", "shop.example", "checkout", "pending"):
        assert text not in page and text in args
    assert "ORDER BY coalesce(s.quality_overall, -1) ASC, s.session_id ASC" in page
    assert "s.frustration > 0" in page and "LIMIT" not in total
    assert args[-1] == 101  # one row more than the page, to know whether another follows


def test_hostile_text_stays_a_parameter() -> None:
    q = SessionQuery.model_validate({"q": "x'); DROP TABLE sessions; --"})
    page, total, args, _ = list_sql(q, ORG)
    assert "DROP" not in page and "DROP" not in total
    assert "websearch_to_tsquery('simple', $2)" in page and args[1].startswith("x')")


def test_cursor_round_trip_continues_after_the_last_row() -> None:
    sid = uuid.uuid4()
    when = datetime(2026, 12, 1, 10, 30, 0, 123456, tzinfo=timezone.utc)
    cursor = encode_cursor("-started_at", when, sid)
    decoded = decode_cursor(cursor, "-started_at")
    assert decoded.key == when and decoded.session_id == sid
    page, _, args, _ = list_sql(SessionQuery(cursor=cursor), ORG)
    assert "(coalesce(s.started_at, s.created_at), s.session_id) < ($2, $3)" in page
    assert args[1:3] == [when, sid]
    up = list_sql(SessionQuery(sort="events", cursor=encode_cursor("events", 7, sid)), ORG)[0]
    assert "(s.event_count, s.session_id) > ($2, $3)" in up
    assert decode_cursor(encode_cursor("quality", 0.25, sid), "quality").key == 0.25


@pytest.mark.parametrize(("cursor", "sort"), [
    ("garbage", "-started_at"), ("e30", "-started_at"), ("%%%", "-started_at"),
    (encode_cursor("-started_at", "not a time", uuid.uuid4()), "-started_at"),
    (encode_cursor("-started_at", "2026-12-01T00:00:00", uuid.uuid4()), "-started_at"),  # naive
    (encode_cursor("-events", 1.5, uuid.uuid4()), "-events"),
    (encode_cursor("-events", True, uuid.uuid4()), "-events"),
])
def test_malformed_cursors_are_refused(cursor: str, sort: str) -> None:
    with pytest.raises(InvalidInput) as err:
        decode_cursor(cursor, sort)
    assert err.value.details[0]["field"] == "query.cursor"


def test_a_cursor_of_another_sort_is_refused() -> None:
    cursor = encode_cursor("-quality", 0.5, uuid.uuid4())
    with pytest.raises(InvalidInput, match="invalid query"):
        list_sql(SessionQuery(sort="-events", cursor=cursor), ORG)


def test_trends_window_validation() -> None:
    assert TrendsQuery.model_validate({"metric": "rejection_rate", "group_by": "site"}).metric == "rejection_rate"
    for bad in ({"metric": "revenue"}, {"group_by": "hour"}, {"since": "2026-12-01T00:00:00"},
                {"since": "2020-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
                {"since": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00Z"}, {"x": "1"}):
        with pytest.raises(ValidationError):
            TrendsQuery.model_validate(bad)
    q = TrendsQuery(until=datetime(2026, 12, 7, tzinfo=timezone.utc))
    since, until = q.window(datetime(2030, 1, 1, tzinfo=timezone.utc))
    assert (until - since).days == 30 and until.year == 2026
    assert set(trends_repo.METRICS) == {"sessions", "events", "mean_quality", "rejection_rate", "frustration_rate"}


def test_flags_move_one_step_forward_only() -> None:
    allowed = {(before, after) for after, before in review_repo.NEXT_STATE.items()}
    assert allowed == {("pending", "reviewed"), ("reviewed", "resolved")}
