"""GET /v1/sessions and GET /v1/analytics/trends on the stack: filters, search over what the
sessions stored, keyset pages, another organisation's sessions never listed, bad parameters in
the one error shape; and, in a database of its own with 100k generated events, EXPLAIN shows
the list and the search using their indexes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from actors.storage.postgres import apply_migrations
from actors.storage.search_repo import SessionQuery, list_sql
from cluster.bench.search_data import generate
from tests.support.client import Api, new_id
from tests.support.sessions import T0, wait_terminal
from tests.support.stack import make_key, run_db

WORD = f"zq{uuid.uuid4().hex[:8]}"  # a word no other test's session holds


def _events(site: str, title: str, button: str, n: int = 12) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = [{"seq": 0, "type": "navigation", "ts": T0, "url": f"https://{site}/p/1",
                                     "title": title, "transition": "typed"}]
    for seq in range(1, n):
        events.append({"seq": seq, "type": "click", "ts": T0 + seq * 900, "url": f"https://{site}/p/1",
                       "x": 100 + seq * 40, "y": 300,
                       "target": {"tag": "button", "text": f"{button} {seq}",
                                  "attributes": {"data-testid": f"b{seq}"},
                                  "selectors": [{"kind": "testid", "value": f"b{seq}", "unique": True}]}})
    return events


def _record(api: Api, task: str, events: list[dict[str, Any]]) -> str:
    sid = api.create_session(session_id=new_id(), task=task, type="human")
    assert api.post_events(sid, events).status_code == 200
    assert api.http.post(f"/v1/sessions/{sid}/finish", json={"outcome": "success"}).status_code == 202
    return sid


@pytest.fixture(scope="module")
def reader(stack: Any) -> Api:
    """A key of the analyst role (the read scope): every session of the workspace, trends."""
    return Api(stack.endpoint, make_key(stack, ["read"]))


@pytest.fixture(scope="module")
def other_reader(stack: Any, other_org_api: Api) -> Api:
    org = run_db(stack, "SELECT org_id FROM api_keys WHERE lookup_id = $1", other_org_api.key.split("_")[1])[0]["org_id"]
    return Api(stack.endpoint, make_key(stack, ["read"], org_id=org))


@pytest.fixture(scope="module")
def recorded(api: Api) -> dict[str, str]:
    """Three sessions of this module: two on one site, one on another, each with its own words."""
    sids = {
        "teapot": _record(api, f"buy a teapot {WORD}", _events("teapots.example", "Copper teapots", "Pour")),
        "kettle": _record(api, f"buy a kettle {WORD}", _events("teapots.example", "Kettles", "Boil")),
        "lamp": _record(api, f"find a lamp {WORD}", _events("Lamps.Example", f"Lamp {WORD}x", "Glow")),
    }
    for sid in sids.values():
        assert wait_terminal(api, sid)["status"] in ("ready", "rejected")
    return sids


def _list(api: Api, **params: Any) -> dict[str, Any]:
    response = api.http.get("/v1/sessions", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_list_items_carry_what_the_pages_show(reader: Api, recorded: dict[str, str]) -> None:
    page = _list(reader, q=WORD, limit=100)
    assert page["total"] == 3 and page["next_cursor"] is None
    by_id = {item["session_id"]: item for item in page["items"]}
    teapot = by_id[recorded["teapot"]]
    assert set(teapot) == {"session_id", "status", "session_type", "task", "site", "started_at", "finished_at",
                           "event_count", "screenshot_count", "quality", "intent", "frustration",
                           "review_state", "title", "card_title", "caption", "sentiment", "sentiment_polarity"}
    assert teapot["site"] == "teapots.example" and teapot["title"] == "Copper teapots"
    assert teapot["event_count"] == 12 and teapot["session_type"] == "human"
    assert isinstance(teapot["quality"], float) and teapot["review_state"] == "none"
    assert by_id[recorded["lamp"]]["site"] == "lamps.example"  # the host, lower-cased


def test_search_finds_task_title_and_element_text(reader: Api, recorded: dict[str, str]) -> None:
    def found(q: str) -> set[str]:
        return {i["session_id"] for i in _list(reader, q=q, limit=100)["items"]}

    assert found(f"teapot {WORD}") == {recorded["teapot"]}          # task words, all of them
    assert recorded["teapot"] in found("copper")                     # a page title
    assert recorded["kettle"] in found(f"boil {WORD}")               # an element's text
    assert found(f"{WORD} -kettle") == {recorded["teapot"], recorded["lamp"]}  # websearch syntax
    assert found(f'"{WORD}x"') == {recorded["lamp"]}                 # only in a title
    assert found(f"{WORD}nothing") == set()


def test_filters_sorts_and_keyset_pages(reader: Api, recorded: dict[str, str]) -> None:
    site = _list(reader, q=WORD, site="teapots.example")
    assert {i["session_id"] for i in site["items"]} == {recorded["teapot"], recorded["kettle"]}
    assert _list(reader, q=WORD, review_state="pending")["total"] == 0
    assert _list(reader, q=WORD, type="automated")["total"] == 0
    assert _list(reader, q=WORD, since="2999-01-01T00:00:00Z")["total"] == 0
    none = _list(reader, q=WORD, frustration="false")["total"]
    some = _list(reader, q=WORD, frustration="true")["total"]
    assert none + some == 3
    for sort in ("-started_at", "quality", "-events"):
        seen, cursor = [], None
        while True:
            page = _list(reader, q=WORD, sort=sort, limit=1, **({"cursor": cursor} if cursor else {}))
            assert page["total"] == 3 and len(page["items"]) == 1
            seen.append(page["items"][0])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert {i["session_id"] for i in seen} == set(recorded.values())  # every one, once
        if sort == "quality":
            qualities = [i["quality"] for i in seen]
            assert qualities == sorted(qualities)


def test_another_organisation_sees_none_of_them(other_reader: Api, recorded: dict[str, str]) -> None:
    assert _list(other_reader, q=WORD) == {"items": [], "next_cursor": None, "total": 0}
    mine = {i["session_id"] for i in _list(other_reader, limit=100)["items"]}
    assert not mine & set(recorded.values())
    trends = other_reader.http.get("/v1/analytics/trends", params={"group_by": "site"}).json()
    assert "teapots.example" not in {p["key"] for p in trends["points"]}


@pytest.mark.parametrize("params", [
    {"colour": "red"}, {"limit": "101"}, {"limit": "0"}, {"quality_min": "0.9", "quality_max": "0.1"},
    {"since": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00Z"}, {"since": "2026-12-01"},
    {"q": "x" * 201}, {"cursor": "not-a-cursor"}, {"sort": "-title"}, {"status": "done"},
    {"limit": ["5", "6"]},
])
def test_bad_parameters_are_422_in_the_error_shape(reader: Api, params: dict[str, Any]) -> None:
    response = reader.http.get("/v1/sessions", params=params)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input" and error["details"] and error["request_id"]


def test_a_cursor_from_another_sort_is_refused(reader: Api, recorded: dict[str, str]) -> None:
    cursor = _list(reader, q=WORD, limit=1)["next_cursor"]
    response = reader.http.get("/v1/sessions", params={"q": WORD, "sort": "quality", "cursor": cursor})
    assert response.status_code == 422 and response.json()["error"]["details"][0]["field"] == "query.cursor"


def test_a_key_is_required(stack: Any) -> None:
    # (What a key may list is its role's business once roles land (issue 17, H8): a recording
    # key then reads its own sessions. The 403 of a missing scope is in test_review.py.)
    base = stack.endpoint
    for path in ("/v1/sessions", "/v1/analytics/trends"):
        assert httpx.get(f"{base}{path}").status_code == 401
        bad = httpx.get(f"{base}{path}", headers={"Authorization": "Bearer tm_0123456789abcdef_" + "x" * 43})
        assert bad.status_code == 401 and bad.json()["error"]["code"] == "unauthenticated"


def test_trends(reader: Api, recorded: dict[str, str]) -> None:
    day = reader.http.get("/v1/analytics/trends", params={"metric": "sessions", "group_by": "day"})
    assert day.status_code == 200, day.text
    body = day.json()
    assert body["metric"] == "sessions" and body["group_by"] == "day" and body["points"]
    assert all(p["value"] == p["count"] for p in body["points"])
    sites = reader.http.get("/v1/analytics/trends", params={"metric": "events", "group_by": "site"}).json()
    by_site = {p["key"]: p for p in sites["points"]}
    assert by_site["teapots.example"]["count"] >= 2 and by_site["teapots.example"]["value"] >= 24
    for metric in ("mean_quality", "rejection_rate", "frustration_rate"):
        points = reader.http.get("/v1/analytics/trends", params={"metric": metric, "group_by": "session_type"}).json()["points"]
        assert all(0 <= p["value"] <= 1 for p in points) and points
    for bad in ({"metric": "revenue"}, {"group_by": "hour"}, {"since": "2020-01-01T00:00:00Z"}):
        response = reader.http.get("/v1/analytics/trends", params=bad)
        assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_input"


# ----------------------------------------------------------------------------- EXPLAIN

@pytest.fixture(scope="module")
def explain_db(stack: Any) -> Iterator[tuple[str, uuid.UUID]]:
    """A database of its own (so no other test sees the rows): 10,000 sessions, 100,000 events
    (fewer sessions make a table small enough that a whole scan is what the planner prefers)."""
    name = f"search_explain_{uuid.uuid4().hex[:10]}"
    run_db(stack, f'CREATE DATABASE "{name}"')
    parts = urlsplit(stack.settings.database.url.get_secret_value())
    dsn = urlunsplit(parts._replace(path=f"/{name}"))
    org = uuid.uuid4()

    async def fill() -> None:
        await apply_migrations(dsn)
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("INSERT INTO organizations (org_id, name) VALUES ($1, 'explain')", org)
            await generate(conn, org, 10_000, 10)
            assert await conn.fetchval("SELECT count(*) FROM interactions") >= 100_000
        finally:
            await conn.close()

    asyncio.run(fill())
    yield dsn, org
    run_db(stack, f'DROP DATABASE "{name}" WITH (FORCE)')


def _plan(dsn: str, org: uuid.UUID, params: dict[str, Any]) -> tuple[str, str]:
    page_sql, total_sql, args, total_args = list_sql(SessionQuery.model_validate(params), org)

    async def go() -> tuple[str, str]:
        conn = await asyncpg.connect(dsn)
        try:
            page = await conn.fetch("EXPLAIN " + page_sql, *args)
            total = await conn.fetch("EXPLAIN " + total_sql, *total_args)
            return "\n".join(r[0] for r in page), "\n".join(r[0] for r in total)
        finally:
            await conn.close()

    return asyncio.run(go())


def test_explain_list_uses_the_sort_indexes(explain_db: tuple[str, uuid.UUID]) -> None:
    dsn, org = explain_db
    page, _ = _plan(dsn, org, {})
    assert "sessions_org_started_idx" in page and "Sort" not in page, page
    page, _ = _plan(dsn, org, {"sort": "quality", "status": "ready"})
    assert "sessions_org_quality_idx" in page, page
    page, total = _plan(dsn, org, {"site": "shop7.example"})
    assert "sessions_org_site_idx" in page and "sessions_org_site_idx" in total, (page, total)


def test_explain_search_uses_the_gin_index(explain_db: tuple[str, uuid.UUID]) -> None:
    dsn, org = explain_db
    page, total = _plan(dsn, org, {"q": "sku42"})  # a rare word: the GIN index finds its ~10 sessions
    assert "Bitmap Index Scan on sessions_search_idx" in page, page
    assert "Bitmap Index Scan on sessions_search_idx" in total, total
    # A common word matches ~1 in 13 sessions: walking the sort index and testing each row's
    # document stops sooner than collecting every match; either way, never a whole-table scan.
    page, _ = _plan(dsn, org, {"q": "kettle", "status": "ready"})
    assert "Seq Scan" not in page, page
