"""The dashboard's sign-in in a real headless Chromium: without a key or a refresh cookie the page
offers the sign-in form (its refresh attempt is answered 401 and it asks), and the form carries
no secret in the page. A full sign-in: the form, the dashboard's data, the live stream followed
with the access token held in memory only, a reload signed in again by the refresh cookie, and
sign-out bringing the form back (for good: the cookie no longer signs in)."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from actors.accounts.audit import Actor
from actors.accounts.people import People
from actors.auth import DEFAULT_ORG_ID, DEFAULT_WORKSPACE_ID
from tests.support.browser import chromium
from tests.support.cdp import Browser, Page, wait_until
from tests.support.stack import make_key

needs_chromium = pytest.mark.skipif(chromium() is None, reason="chromium is not installed (.ci/run installs it)")


@needs_chromium
def test_without_a_key_or_cookie_the_page_offers_sign_in(stack: Any, tmp_path: Path) -> None:
    assert httpx.post(f"{stack.endpoint}/v1/auth/refresh").status_code == 401  # what the page meets
    # A live browser, not --dump-dom: the refresh waits for a Web Lock (one tab refreshes at a
    # time), which the dump's virtual time never grants.
    browser = Browser(tmp_path / "profile")
    try:
        page = browser.open(f"{stack.endpoint}/dashboard")
        wait_until(lambda: not _hidden(page, "signin-form"), 20, "the page offers sign-in")
        assert not _hidden(page, "key-form"), "keys still work"
        assert _hidden(page, "signout")
        assert page.eval("document.getElementById('signin-password').type") == "password"
        assert _text(page, "status-ready") == "–" and _text(page, "error") == ""
    finally:
        browser.close()


PASSWORD = "violet harbour lantern"


def _account(stack: Any) -> str:
    email = f"dash-{uuid.uuid4().hex[:10]}@example.org"

    async def go() -> None:
        pool = await asyncpg.create_pool(stack.settings.database.url.get_secret_value(), min_size=0, max_size=1)
        try:
            await People.from_settings(stack.settings).accounts.create_account(
                pool, email, PASSWORD, org_id=DEFAULT_ORG_ID, workspace_id=DEFAULT_WORKSPACE_ID, role="analyst",
                actor=Actor("cli", "e2e"))
        finally:
            await pool.close()

    asyncio.run(go())
    return email


def _text(page: Page, element_id: str) -> str:
    return str(page.eval(f"document.getElementById({json.dumps(element_id)}).textContent"))


def _hidden(page: Page, element_id: str) -> bool:
    return bool(page.eval(f"document.getElementById({json.dumps(element_id)}).hidden"))


def _reload(page: Page) -> None:
    page.eval("window.__before_reload = 1; 1")
    page.call("Page.reload")
    wait_until(lambda: page.eval("typeof window.__before_reload === 'undefined' && document.readyState === 'complete'"),
               20, "the reloaded page")


def _signed_in_with_data(page: Page) -> None:
    wait_until(lambda: _text(page, "connection") == "live" and _text(page, "status-ready") != "–", 20,
               "the dashboard's data over the access token")
    assert _hidden(page, "signin-form") and _hidden(page, "key-form") and not _hidden(page, "signout")


@needs_chromium
def test_a_person_signs_in_follows_live_reloads_and_signs_out(stack: Any, tmp_path: Path) -> None:
    email = _account(stack)
    recorder = make_key(stack, ["ingest"])
    browser = Browser(tmp_path / "profile")
    try:
        page = browser.open(f"{stack.endpoint}/dashboard")
        wait_until(lambda: not _hidden(page, "signin-form"), 20, "the sign-in form")
        page.eval(f"document.getElementById('signin-email').value = {json.dumps(email)};"
                  f"document.getElementById('signin-password').value = {json.dumps(PASSWORD)};"
                  "document.getElementById('signin-form').requestSubmit(); 1")
        _signed_in_with_data(page)
        assert page.eval("document.getElementById('signin-password').value") == ""

        # The live stream runs on the in-memory token: a session created now reaches the page.
        before = len(page.eval("TM.liveDelays()"))
        created = httpx.post(f"{stack.endpoint}/v1/sessions", json={"type": "automated", "task": "dash live"},
                             headers={"Authorization": f"Bearer {recorder}"}, timeout=30)
        assert created.status_code == 201, created.text
        wait_until(lambda: any(d["session_id"] == created.json()["session_id"] for d in page.eval("TM.liveDelays()")),
                   15, "the session's live event on the page")
        assert len(page.eval("TM.liveDelays()")) > before
        stored = page.eval("JSON.stringify([Object.entries(sessionStorage), Object.entries(localStorage),"
                           " document.cookie, location.href, document.documentElement.outerHTML])")
        assert "eyJ" not in stored and PASSWORD not in stored, "the token and password are in memory only"
        assert page.eval("TM.key()") is None

        # A reload forgets the token; the HttpOnly refresh cookie signs the page in again.
        _reload(page)
        _signed_in_with_data(page)

        page.eval("document.getElementById('signout').click(); 1")
        wait_until(lambda: not _hidden(page, "signin-form"), 10, "the sign-in form after signing out")
        assert _hidden(page, "signout")
        _reload(page)
        wait_until(lambda: not _hidden(page, "signin-form"), 20, "the sign-in form: the cookie no longer signs in")
        assert _text(page, "connection") != "live"
    finally:
        browser.close()
