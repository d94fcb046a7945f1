"""The browsing pages (/sessions, /sessions/{id}, /trends) sign people in, as the dashboard does,
in a real headless Chromium: the sign-in form, the list's data over the in-memory access token,
a reload signed in again by the refresh cookie, two tabs opened at once both signed in without
the second refresh being taken for a replayed token (which would revoke the sign-in), and
sign-out bringing the forms back for good."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from actors.accounts.audit import Actor
from actors.accounts.people import People
from actors.auth import DEFAULT_ORG_ID, DEFAULT_WORKSPACE_ID
from tests.support.browser import chromium
from tests.support.cdp import Browser, Page, wait_until
from tests.support.databases import with_pool

needs_chromium = pytest.mark.skipif(chromium() is None, reason="chromium is not installed (.ci/run installs it)")

PASSWORD = "amber orchard compass"


def _account(stack: Any) -> str:
    email = f"pages-{uuid.uuid4().hex[:10]}@example.org"
    with_pool(stack, lambda pool: People.from_settings(stack.settings).accounts.create_account(
        pool, email, PASSWORD, org_id=DEFAULT_ORG_ID, workspace_id=DEFAULT_WORKSPACE_ID, role="analyst",
        actor=Actor("cli", "e2e")))
    return email


def _hidden(page: Page, element_id: str) -> bool:
    return bool(page.eval(f"document.getElementById({json.dumps(element_id)}).hidden"))


def _list_loaded(page: Page) -> None:
    wait_until(lambda: page.eval("document.getElementById('total').textContent").strip().isdigit(), 20,
               "the session list's total over the access token")
    assert _hidden(page, "signin-form") and _hidden(page, "key-form") and not _hidden(page, "signout")
    assert page.eval("TM.key()") is None


def _reload(page: Page) -> None:
    page.eval("window.__before_reload = 1; 1")
    page.call("Page.reload")
    wait_until(lambda: page.eval("typeof window.__before_reload === 'undefined' && document.readyState === 'complete'"),
               20, "the reloaded page")


@needs_chromium
def test_the_pages_sign_in_survive_two_tabs_refreshing_at_once_and_sign_out(stack: Any, tmp_path: Path) -> None:
    email = _account(stack)
    browser = Browser(tmp_path / "profile")
    try:
        page = browser.open(f"{stack.endpoint}/sessions")
        wait_until(lambda: not _hidden(page, "signin-form"), 20, "the sign-in form")
        assert not _hidden(page, "key-form"), "keys still work"
        page.eval(f"document.getElementById('signin-email').value = {json.dumps(email)};"
                  f"document.getElementById('signin-password').value = {json.dumps(PASSWORD)};"
                  "document.getElementById('signin-form').requestSubmit(); 1")
        _list_loaded(page)
        stored = page.eval("JSON.stringify([Object.entries(sessionStorage), Object.entries(localStorage),"
                           " document.cookie, location.href, document.documentElement.outerHTML])")
        assert "eyJ" not in stored and PASSWORD not in stored, "the token and password are in memory only"

        _reload(page)  # the refresh cookie signs the page in again
        _list_loaded(page)

        # Refreshes sent together: unserialised, the second would present the cookie the first had
        # just rotated, and the server would take it for a replay and revoke the sign-in.
        both = page.eval("Promise.all([TM.refresh(), TM.refresh(), TM.refresh()])"
                         ".then(function (r) { return r.map(function (b) { return !!(b && b.access_token); }); })")
        assert both == [True, True, True], "every refresh sent at once got a token"

        # Two more tabs load together, each refreshing on load.
        targets = [browser.conn.call("Target.createTarget", {"url": f"{stack.endpoint}/{path}"})["targetId"]
                   for path in ("trends", "sessions")]
        trends, again = (browser.attach(target) for target in targets)
        for tab in (trends, again):
            wait_until(lambda tab=tab: tab.eval(
                "(function () { var f = document.getElementById('signin-form'), o = document.getElementById('signout');"
                " return !!(f && o && f.hidden && !o.hidden); })()"), 20,
                "a tab opened alongside signed in by the refresh cookie")
        _list_loaded(again)
        _reload(page)
        _list_loaded(page)  # the sign-in is still alive after the concurrent refreshes

        page.eval("document.getElementById('signout').click(); 1")
        wait_until(lambda: not _hidden(page, "signin-form"), 10, "the sign-in form after signing out")
        _reload(page)
        wait_until(lambda: not _hidden(page, "signin-form"), 20, "the forms: the cookie no longer signs in")
        assert _hidden(page, "signout")
    finally:
        browser.close()
