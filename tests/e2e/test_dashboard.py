"""The operations dashboard in a real headless Chromium against the real stack: the numbers the
page shows are the database's, the static files carry a strict CSP, and /v1/stats answers in
the one error shape."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.stack import make_key, run_db
from tests.integration.test_processing import record, wait_terminal
from tests.support.browser import Dom, chromium, dump_dom
from tests.support.client import Api, click_event
from tests.support.sessions import poor_session, shop_session

CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'"
STATUSES = ("recording", "finalizing", "ready", "rejected", "failed")
STATIC = {
    "/dashboard": "text/html",
    "/dashboard/dashboard.js": "text/javascript",
    "/dashboard/dashboard.css": "text/css",
}

needs_chromium = pytest.mark.skipif(chromium() is None, reason="chromium is not installed (.ci/run installs it)")


class Org:
    """A fresh organisation, so that the page's numbers are exactly this module's sessions."""

    def __init__(self, stack: Any):
        self.org_id = uuid.uuid4()
        run_db(stack, "INSERT INTO organizations (org_id, name) VALUES ($1, $2)", self.org_id, f"dash-{self.org_id}")
        self.api = Api(stack.endpoint, make_key(stack, ["ingest", "read"], org_id=self.org_id))
        self.ingest_only_key = make_key(stack, ["ingest"], org_id=self.org_id)


@pytest.fixture(scope="module")
def org(stack: Any) -> Org:
    return Org(stack)


@pytest.fixture(scope="module")
def recorded(org: Org) -> dict[str, Any]:
    """One good and one poor session, finalised; one session still recording."""
    events, shots = shop_session(200, 10)
    good = record(org.api, events, shots, type="human", task="buy the blue kettle")
    poor = record(org.api, poor_session(), [])
    views = {sid: wait_terminal(org.api, sid) for sid in (good, poor)}
    assert all(v["status"] in ("ready", "rejected") for v in views.values()), views
    live = org.api.create_session(type="automated", task="still recording")
    answer = org.api.post_events(live, [click_event(seq) for seq in range(30)])
    assert answer.status_code == 200, answer.text
    return {"good": good, "poor": poor, "live": live, "views": views}


def db_counts(stack: Any, org_id: uuid.UUID) -> dict[str, int]:
    rows = run_db(stack, "SELECT status, count(*) AS n FROM sessions WHERE org_id = $1 GROUP BY status", org_id)
    counts = {status: 0 for status in STATUSES}
    counts.update({r["status"]: int(r["n"]) for r in rows})
    return counts


def db_scored(stack: Any, org_id: uuid.UUID) -> int:
    return int(run_db(
        stack, "SELECT count(*) AS n FROM sessions WHERE org_id = $1"
        " AND status IN ('ready', 'rejected', 'failed') AND quality_overall IS NOT NULL", org_id,
    )[0]["n"])


@needs_chromium
def test_the_page_shows_the_organisations_numbers(stack: Any, org: Org, recorded: dict[str, Any], tmp_path: Path) -> None:
    live = recorded["live"]
    # Fresh events, so the rate over the last minute is not zero while the browser polls.
    answer = org.api.post_events(live, [click_event(seq) for seq in range(30, 80)])
    assert answer.status_code == 200, answer.text
    before = db_counts(stack, org.org_id)
    assert before["ready"] >= 1 and before["rejected"] >= 1 and before["recording"] == 1, before

    html = dump_dom(f"{stack.endpoint}/dashboard#key={org.api.key}", tmp_path / "profile")

    assert db_counts(stack, org.org_id) == before, "the numbers moved while the browser ran"
    dom = Dom(html)
    assert "hidden" in dom["error"].attrs and dom.text("error") == "", dom.text("error")
    assert dom.text("connection") == "live"
    for status in STATUSES:
        assert dom.text(f"status-{status}") == str(before[status]), (status, dom.text(f"status-{status}"), before)
    assert dom.text("backlog") == str(before["finalizing"])
    models = dom["models"].descendants("tr")
    assert [r.attrs.get("data-kind") for r in models] == ["vision", "card", "moderation"]
    assert [td.text() for td in models[0].descendants("td")][3] == "0"  # calls: local providers make none

    rows = dom["sessions-table"].descendants("tbody")[0].descendants("tr")
    assert [r.attrs.get("data-session-id") for r in rows] == [live]
    cells = [td.text() for td in rows[0].descendants("td")]
    assert cells[:5] == [live, "automated", "recording", "80", "0"], cells
    assert dom.text("live-count") == "1"

    assert int(dom.text("events-last-60s")) >= 50
    assert float(dom.text("events-per-s-60")) > 0
    assert float(dom.text("events-per-s")) >= 0
    assert dom["events-sparkline"].descendants("polyline"), "no sparkline drawn"

    bars = [r for r in dom["quality-histogram"].descendants("rect") if "bar" in (r.attrs.get("class") or "")]
    assert len(bars) == 10
    assert sum(int(b.attrs["data-count"] or 0) for b in bars) == db_scored(stack, org.org_id) >= 2
    assert [float(b.attrs["data-lo"] or 0) for b in bars] == [i / 10 for i in range(10)]
    assert dom.text("quality-ready") == str(before["ready"])
    assert dom.text("quality-rejected") == str(before["rejected"])
    good_score = recorded["views"][recorded["good"]]["quality"]["overall"]
    good_bin = bars[min(9, int(good_score * 10))]
    assert int(good_bin.attrs["data-count"] or 0) >= 1 and float(good_bin.attrs["height"] or 0) > 0

    assert dom["jobs"].descendants("li") == []
    assert "hidden" not in dom["jobs-empty"].attrs and dom.text("jobs-empty") == "no jobs yet"
    assert org.api.key not in html, "the key must not end up in the page"


@needs_chromium
def test_the_page_shows_why_a_key_is_refused(stack: Any, tmp_path: Path) -> None:
    expected = httpx.get(f"{stack.endpoint}/v1/stats", headers={"Authorization": "Bearer tm_not_a_key"})
    assert expected.status_code == 401
    html = dump_dom(f"{stack.endpoint}/dashboard#key=tm_not_a_key", tmp_path / "profile", virtual_time_ms=5000)
    dom = Dom(html)
    assert dom.text("error") == expected.json()["error"]["message"]
    assert "hidden" not in dom["error"].attrs
    assert "hidden" not in dom["key-form"].attrs, "the page asks for another key"
    assert dom.text("status-ready") == "–"


def test_static_files_carry_the_csp_and_no_inline_code(stack: Any) -> None:
    with httpx.Client(base_url=stack.endpoint, timeout=10) as http:  # no key: the files hold no data
        for path, media_type in STATIC.items():
            answer = http.get(path)
            assert answer.status_code == 200, (path, answer.text)
            assert answer.headers["content-security-policy"] == CSP
            assert answer.headers["cache-control"] == "no-cache"
            assert answer.headers["content-type"].startswith(media_type)
            assert answer.headers["x-content-type-options"] == "nosniff"
            body = answer.text
            # Nothing from elsewhere: the only absolute URL is the SVG namespace name.
            assert re.findall(r"https?://[^\s\"']+", body.replace("http://www.w3.org/2000/svg", "")) == [], path
            if path == "/dashboard":
                assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", body), "inline script"
                assert not re.search(r"\sstyle=|<style", body), "inline style"
                assert not re.search(r"\son[a-z]+=", body), "inline event handler"
        assert http.get("/dashboard/secrets.txt").status_code == 404


def test_stats_match_the_database(stack: Any, org: Org, recorded: dict[str, Any], api: Api) -> None:
    answer = org.api.http.get("/v1/stats")
    assert answer.status_code == 200, answer.text
    stats = answer.json()
    counts = db_counts(stack, org.org_id)
    assert stats["statuses"] == counts
    assert stats["backlog"]["finalizing"] == counts["finalizing"]
    # Model calls per kind: none for this organisation (local providers); queued lines are the cluster's.
    models = stats["backlog"]["models"]
    assert [m["kind"] for m in models] == ["vision", "card", "moderation"]
    assert all(m["calls"] == m["tokens_in"] == 0 and m["cost_usd"] == 0 for m in models), models
    assert stats["live"]["count"] == 1 and [s["session_id"] for s in stats["live"]["recent"]] == [recorded["live"]]
    assert set(stats["live"]["recent"][0]) == {"session_id", "type", "status", "event_count", "screenshot_count", "updated_at"}
    assert stats["jobs"] == []
    quality = stats["quality"]
    assert quality["ready"] == counts["ready"] and quality["rejected"] == counts["rejected"]
    assert quality["sessions"] == counts["ready"] + counts["rejected"] + counts["failed"]
    assert [(b["lo"], b["hi"]) for b in quality["bins"]] == [(i / 10, (i + 1) / 10) for i in range(10)]
    assert sum(b["count"] for b in quality["bins"]) == quality["scored"] == db_scored(stack, org.org_id)
    events = stats["events"]
    assert set(events) == {"last_60s", "last_10s", "per_s_60s", "per_s_10s"}
    assert events["last_60s"] >= events["last_10s"] >= 0

    # A write shows at once in the 10 s window.
    live = recorded["live"]
    seq = org.api.session(live)["max_seq"] + 1
    assert org.api.post_events(live, [click_event(s) for s in range(seq, seq + 25)]).status_code == 200
    after = org.api.http.get("/v1/stats").json()["events"]
    assert after["last_10s"] >= 25 and after["per_s_10s"] >= 2.5

    # Another organisation sees none of it.
    theirs = api.http.get("/v1/stats").json()
    assert recorded["live"] not in [s["session_id"] for s in theirs["live"]["recent"]]

    limited = org.api.http.get("/v1/stats", params={"limit": 1})
    assert limited.status_code == 200 and len(limited.json()["live"]["recent"]) == 1


def test_stats_errors_have_the_one_shape(stack: Any, org: Org) -> None:
    url = f"{stack.endpoint}/v1/stats"

    def error_of(answer: httpx.Response, status: int, code: str) -> dict[str, Any]:
        assert answer.status_code == status, answer.text
        error = answer.json()["error"]
        assert set(error) == {"code", "message", "details", "request_id"} and error["code"] == code, error
        assert answer.headers["x-request-id"]
        return dict(error)

    error_of(httpx.get(url), 401, "unauthenticated")
    assert httpx.get(url).headers["www-authenticate"] == "Bearer"
    error_of(httpx.get(url, headers={"Authorization": "Bearer tm_wrong"}), 401, "unauthenticated")
    error_of(httpx.get(url, headers={"Authorization": f"Bearer {org.ingest_only_key}"}), 403, "forbidden")
    for params in ({"limit": 0}, {"limit": 101}, {"limit": "x"}, {"limit": "-1"}, {"since": 1}):
        error = error_of(org.api.http.get("/v1/stats", params=params), 422, "invalid_input")
        assert error["details"] and error["details"][0]["field"].startswith("query."), (params, error)


def test_openapi_documents_the_stats(stack: Any) -> None:
    schema = httpx.get(f"{stack.endpoint}/openapi.json").json()
    stats = schema["paths"]["/v1/stats"]["get"]
    assert stats["tags"] == ["dashboard"]
    assert {"401", "403", "422", "503"} <= set(stats["responses"])
    assert stats["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/StatsResponse")
    assert "StatsResponse" in schema["components"]["schemas"]
    assert schema["paths"]["/dashboard"]["get"]["security"] == []
