"""CORS from a real browser: headless Chromium runs fetch() with an API key from pages on two
origins against the real stack. The listed origin (tests/support/cors_pages.ALLOWED_ORIGIN,
set on the stack by tests/conftest.py) reads its answers; any other origin's calls fail in
the browser, and a denied write never reaches the API at all (its preflight is refused)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import chromium
from tests.support.cdp import Browser, Page
from tests.support.client import Api, new_id
from tests.support.cors_pages import ALLOWED_HOST, ALLOWED_PORT
from tests.support.shop_site import serve_shop
from tests.support.stack import run_db

pytestmark = pytest.mark.skipif(chromium() is None, reason="chromium is not installed (.ci/run installs it)")


def browser_fetch(page: Page, url: str, init: dict[str, Any]) -> dict[str, Any]:
    """What the page's own script sees: status, body and exposed headers, or the failure."""
    script = f"""
      fetch({json.dumps(url)}, {json.dumps(init)})
        .then(async r => ({{ok: true, status: r.status, body: await r.text(),
                            request_id: r.headers.get("X-Request-ID")}}))
        .catch(e => ({{ok: false, error: String(e)}}))
    """
    return dict(page.eval(script))


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Any:
    chrome = Browser(tmp_path_factory.mktemp("cors") / "profile")
    yield chrome
    chrome.close()


def test_only_the_listed_origin_can_call_the_api_from_a_browser(api: Api, stack: Any, browser: Browser) -> None:
    auth = {"Authorization": f"Bearer {api.key}"}
    sid = api.create_session()
    read = {"method": "GET", "headers": auth}

    with serve_shop(ALLOWED_PORT) as shop, serve_shop() as other_shop:
        allowed = browser.open(shop.replace("127.0.0.1", ALLOWED_HOST) + "/")
        got = browser_fetch(allowed, f"{api.base_url}/v1/sessions/{sid}", read)
        assert got["ok"] and got["status"] == 200, got
        assert json.loads(got["body"])["session_id"] == sid
        assert got["request_id"], "X-Request-ID is exposed to the page"
        made = new_id()
        create = {"method": "POST", "headers": {**auth, "Content-Type": "application/json", "X-Request-ID": "cors-ok-1"},
                  "body": json.dumps({"session_id": made, "type": "human"})}
        posted = browser_fetch(allowed, f"{api.base_url}/v1/sessions", create)
        assert posted["ok"] and posted["status"] == 201 and posted["request_id"] == "cors-ok-1", posted

        other = browser.open(other_shop + "/")
        refused = browser_fetch(other, f"{api.base_url}/v1/sessions/{sid}", read)
        assert not refused["ok"] and "Failed to fetch" in refused["error"], refused
        blocked = new_id()
        denied_create = {**create, "body": json.dumps({"session_id": blocked, "type": "human"})}
        denied = browser_fetch(other, f"{api.base_url}/v1/sessions", denied_create)
        assert not denied["ok"], denied

    rows = run_db(stack, "SELECT session_id::text AS sid FROM sessions WHERE session_id = ANY($1::uuid[])",
                  [made, blocked])
    assert {r["sid"] for r in rows} == {made}, "the denied origin's POST must never reach the API"
