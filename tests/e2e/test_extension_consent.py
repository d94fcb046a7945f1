"""Consent in the recording extension (issue 18.1), in real headless Chromium against the real
stack: the workspace's notice is shown before the first recording and nothing is recorded on
Decline; Agree records; a refusal (403 consent_required) stops capture and holds what is queued,
and a notice changed meanwhile (409 notice_changed) is fetched and shown; after agreeing, every
held event arrives; Withdraw stops capture and sending at once.

The test has an organisation of its own (its default workspace, notice and recorder), so the
notices it sets are seen by no other test."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from actors import auth
from tests.support.browser import chromium
from tests.support.cdp import Page, wait_until
from tests.support.recorder import Recorder
from tests.support.shop_site import serve_shop
from tests.support.stack import run_db

pytestmark = pytest.mark.skipif(chromium() is None, reason="chromium is not installed (.ci/run installs it)")

PRODUCT = "/product.html?id=blue-kettle"
# The events the service worker holds for a session (lib/queue.js), in seq order.
QUEUED = """new Promise((resolve, reject) => {
  const req = indexedDB.open("tracemill");
  req.onerror = () => reject(req.error);
  req.onsuccess = () => {
    const all = req.result.transaction("events").objectStore("events").getAll();
    all.onsuccess = () => resolve(JSON.stringify(all.result.filter((r) => r.sid === %s)));
  };
})"""


@dataclass
class Person:
    workspace_id: uuid.UUID
    recorder_id: uuid.UUID
    key: str  # recorder-bound: it needs the recorder's consent
    admin_key: str  # the workspace's admin: sets the notice


def _person(stack: Any) -> Person:
    async def go() -> Person:
        pepper = auth.pepper_of(stack.settings.auth)
        conn = await asyncpg.connect(stack.settings.database.url.get_secret_value())
        try:
            org = uuid.uuid4()
            await conn.execute("INSERT INTO organizations (org_id, name) VALUES ($1, $2)", org, f"consent-e2e-{org}")
            ws = await conn.fetchval("SELECT workspace_id FROM workspaces WHERE org_id = $1 AND is_default", org)
            recorder = await conn.fetchval(
                "INSERT INTO recorders (recorder_id, org_id, workspace_id, name) VALUES ($1, $2, $3, $4)"
                " RETURNING recorder_id", uuid.uuid4(), org, ws, f"consent-e2e-{org}")
            key = (await auth.create_key(conn, role="recorder", org_id=org, workspace_id=ws, recorder_id=recorder,
                                         name="consent-e2e", pepper=pepper))[1]
            admin = (await auth.create_key(conn, role="admin", org_id=org, workspace_id=ws, name="consent-e2e-admin",
                                           pepper=pepper))[1]
            return Person(ws, recorder, key, admin)
        finally:
            await conn.close()

    return asyncio.run(go())


def _set_notice(stack: Any, person: Person, version: str) -> dict[str, Any]:
    notice = {"version": version, "text": f"Notice {version}: this browser's pages, clicks and screenshots are kept.",
              "required": True, "recorded": [f"clicks ({version})", "screenshots of the pages"],
              "masked": [f"typed values ({version})"], "retention_days": 45}
    with httpx.Client(base_url=stack.endpoint, timeout=30,
                      headers={"Authorization": f"Bearer {person.admin_key}"}) as admin:
        r = admin.put(f"/v1/workspaces/{person.workspace_id}/notice", json=notice)
    assert r.status_code in (200, 201), r.text
    return notice


def _as_recorder(stack: Any, person: Person) -> httpx.Client:
    return httpx.Client(base_url=stack.endpoint, timeout=30, headers={"Authorization": f"Bearer {person.key}"})


def _stored(stack: Any, sid: str) -> list[tuple[int, str]]:
    rows = run_db(stack, "SELECT seq, type FROM interactions WHERE session_id = $1 ORDER BY seq", uuid.UUID(sid))
    return [(int(r["seq"]), str(r["type"])) for r in rows]


def _popup_notice(page: Page) -> dict[str, Any] | None:
    return page.eval(
        "document.getElementById('notice').hidden ? null : Object.fromEntries(['notice-text', 'notice-version',"
        " 'notice-retention'].map((id) => [id, document.getElementById(id).textContent]).concat("
        " ['notice-recorded', 'notice-masked'].map((id) => [id, [...document.getElementById(id).children]"
        ".map((li) => li.textContent)])))")


def _wait_notice(page: Page, version: str) -> dict[str, Any]:
    return dict(wait_until(lambda: (n := _popup_notice(page)) and n["notice-version"] == version and n, 15,
                           f"the popup to show notice {version}"))


def _consent_state(page: Page) -> str:
    return str(page.eval("document.getElementById('consent').dataset.state"))


def _click(rec: Recorder) -> None:
    rec.tab.click(".tabs div:nth-child(2)")  # the reviews tab: a click that does not navigate
    rec.settle(0.4)


@pytest.fixture()
def recorder(tmp_path: Path) -> Any:
    rec = Recorder.launch(tmp_path / "profile")
    yield rec
    rec.close()


def test_notice_agree_refusal_holds_the_queue_and_withdraw_stops(stack: Any, recorder: Recorder) -> None:
    person = _person(stack)
    first = _set_notice(stack, person, f"e2e-{uuid.uuid4().hex[:10]}")
    with serve_shop() as base, _as_recorder(stack, person) as me:
        assert recorder.configure(stack.endpoint, person.key) == "Saved."
        recorder.tab.navigate(base + PRODUCT)

        # Start: the notice comes first, as the workspace set it. Decline records nothing.
        popup = recorder.browser.extension_page("popup/popup.html")
        try:
            popup.click("#start")
            shown = _wait_notice(popup, first["version"])
            assert shown["notice-text"] == first["text"]
            assert shown["notice-recorded"] == first["recorded"] and shown["notice-masked"] == first["masked"]
            assert "45 days" in shown["notice-retention"]
            popup.click("#decline")
            wait_until(lambda: _consent_state(popup) == "declined", 10, "the popup to show the decline")
            assert popup.eval("document.getElementById('state').dataset.state") == "idle"
        finally:
            recorder.browser.close_target(popup)
        _click(recorder)
        time.sleep(1)
        assert not recorder.status().get("sessionId")
        assert run_db(stack, "SELECT count(*) FROM sessions WHERE recorder_id = $1", person.recorder_id)[0][0] == 0
        assert me.get("/v1/consent").json()["current"] is None

        # Start again, Agree: the consent is recorded and a click reaches the database.
        popup = recorder.browser.extension_page("popup/popup.html")
        try:
            popup.click("#start")
            _wait_notice(popup, first["version"])
            popup.click("#agree")
            wait_until(lambda: popup.eval("document.getElementById('state').dataset.state") == "recording", 10,
                       "recording after Agree")
            sid = str(popup.eval("document.getElementById('session').textContent"))
            assert not popup.eval("document.getElementById('withdraw').hidden")
        finally:
            recorder.browser.close_target(popup)
            recorder.browser.conn.call("Target.activateTarget", {"targetId": recorder.tab.target_id})
        assert me.get("/v1/consent").json()["current"]["version"] == first["version"]
        _click(recorder)
        wait_until(lambda: "click" in {t for _, t in _stored(stack, sid)}, 20, "the click in the database")
        recorder.wait_delivered()

        # Consent withdrawn behind the extension's back (another device): the next writes are
        # refused with consent_required; capture stops and what was queued is held.
        assert me.delete("/v1/consent").status_code == 200

        def refused() -> dict[str, Any] | None:
            # Clicks at once, so that several are recorded before the first send is refused. (A
            # second ingress replica may still allow for the gate's cache time, 30 s: its acks
            # are stored and the clicks go on until the refusal.)
            if (s := recorder.status()).get("consent") == "needed":
                return s
            for _ in range(3):
                recorder.tab.click(".tabs div:nth-child(2)")
            time.sleep(1.5)
            return None

        held = wait_until(refused, 45, "the extension to hear consent_required", interval=0)
        queued = [(e["seq"], e["event"]["type"]) for e in json.loads(recorder.worker_eval(QUEUED % json.dumps(sid)))]
        assert queued and min(seq for seq, _ in queued) == int(held["acked"]), (queued, held)
        assert len(queued) == int(held["recorded"]) - int(held["acked"]) == int(held["queued"]), (queued, held)
        assert len(_stored(stack, sid)) == int(held["acked"])  # the held events: none stored
        _click(recorder)  # capture has stopped: not recorded
        time.sleep(1)
        assert int(recorder.status()["recorded"]) == int(held["recorded"])

        # The popup shows the notice again; the admin changes it meanwhile: Agree to the old one
        # is refused (409 notice_changed) and the new one is shown; Agree to it drains the queue.
        popup = recorder.browser.extension_page("popup/popup.html")
        try:
            _wait_notice(popup, first["version"])
            assert popup.eval("document.getElementById('state').dataset.state") == "held"
            second = _set_notice(stack, person, f"e2e-{uuid.uuid4().hex[:10]}")
            popup.click("#agree")
            _wait_notice(popup, second["version"])
            assert me.get("/v1/consent").json()["current"] is None
            popup.click("#agree")
            wait_until(lambda: _consent_state(popup) == "given", 10, "consent to the new notice")
        finally:
            recorder.browser.close_target(popup)
            recorder.browser.conn.call("Target.activateTarget", {"targetId": recorder.tab.target_id})
        assert me.get("/v1/consent").json()["current"]["version"] == second["version"]
        delivered = recorder.wait_delivered()
        stored = _stored(stack, sid)
        assert [seq for seq, _ in stored] == list(range(int(delivered["recorded"])))
        assert set(queued) <= set(stored), (queued, stored)  # every held event, none lost
        print(f"\nheld across consent_required: {len(queued)} events ({sum(t == 'click' for _, t in queued)} clicks),"
              " all stored after agreeing")

        # Withdraw in the popup: capture and sending stop at once; the server records it.
        popup = recorder.browser.extension_page("popup/popup.html")
        try:
            popup.click("#withdraw")
            wait_until(lambda: _consent_state(popup) == "withdrawn", 10, "the popup to show the withdrawal")
        finally:
            recorder.browser.close_target(popup)
            recorder.browser.conn.call("Target.activateTarget", {"targetId": recorder.tab.target_id})
        # The popup closes the gate first and then sends DELETE /v1/consent: the server has it soon after.
        wait_until(lambda: me.get("/v1/consent").json()["current"] is None, 15, "the server to record the withdrawal")
        history = me.get("/v1/consent").json()
        trail = run_db(stack, "SELECT at, action, outcome, request_id FROM audit_log WHERE target = $1 ORDER BY at",
                       str(person.recorder_id))
        assert history["current"] is None and all(h["withdrawn_at"] for h in history["history"]), (history, trail)
        before = recorder.status()
        count = len(_stored(stack, sid))
        _click(recorder)
        _click(recorder)
        time.sleep(2)
        after = recorder.status()
        assert after["recorded"] == before["recorded"], (before, after)  # not captured
        assert len(_stored(stack, sid)) == count  # nothing sent
        assert json.loads(recorder.worker_eval("JSON.stringify(tracemill.consent.state.state)")) == "withdrawn"
