"""Consent (issue 18.1) on the real stack, in an organisation of its own (its notices change):
a recorder key without consent is refused on all four write paths and nothing is stored; agreeing
lets it record; withdrawing refuses it again; a stale notice version is 409; only admins set the
notice, bad bodies change nothing, and every change is in the audit trail."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from actors import auth
from tests.support.client import Api, click_event, send_frame
from tests.support.sessions import page_png
from tests.support.stack import make_key, run_db

pytestmark = pytest.mark.integration

PNG = {"Content-Type": "image/png"}


@dataclass
class Org:
    org_id: uuid.UUID
    workspace_id: uuid.UUID
    admin: Api


@pytest.fixture(scope="module")
def org(stack: Any) -> Org:
    org_id = uuid.uuid4()
    run_db(stack, "INSERT INTO organizations (org_id, name) VALUES ($1, $2)", org_id, f"consent-{org_id}")
    ws = run_db(stack, "SELECT workspace_id FROM workspaces WHERE org_id = $1 AND is_default", org_id)[0][0]
    return Org(org_id, ws, Api(stack.endpoint, make_key(stack, ["admin"], org_id=org_id)))


def _recorder(stack: Any, org: Org) -> tuple[uuid.UUID, Api]:
    """A recorder of the organisation's workspace and a client with a key bound to it."""
    recorder = uuid.uuid4()
    run_db(stack, "INSERT INTO recorders (recorder_id, org_id, workspace_id, name) VALUES ($1, $2, $3, $4)",
           recorder, org.org_id, org.workspace_id, f"consent {recorder}")

    async def key() -> str:
        import asyncpg

        conn = await asyncpg.connect(stack.settings.database.url.get_secret_value())
        try:
            return (await auth.create_key(conn, role="recorder", org_id=org.org_id, workspace_id=org.workspace_id,
                                          recorder_id=recorder, name="consent",
                                          pepper=auth.pepper_of(stack.settings.auth)))[1]
        finally:
            await conn.close()

    return recorder, Api(stack.endpoint, asyncio.run(key()))


def _code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


def _stored(stack: Any, recorder: uuid.UUID) -> tuple[int, int, int]:
    """(sessions, events, screenshots) the recorder has in the database."""
    row = run_db(stack, "SELECT count(*) AS s,"
                        " (SELECT count(*) FROM screenshots x JOIN sessions y USING (session_id) WHERE y.recorder_id = $1)"
                        " AS x FROM sessions WHERE recorder_id = $1", recorder)[0]
    events = run_db(stack, "SELECT count(*) FROM interactions i JOIN sessions s USING (session_id)"
                           " WHERE s.recorder_id = $1", recorder)[0][0]
    return int(row["s"]), int(events), int(row["x"])


def _until_refused(stack: Any, call: Any) -> None:
    deadline = time.monotonic() + stack.settings.auth.cache_ttl_s + 10
    while (answer := call()).status_code != 403:
        assert answer.status_code < 300 and time.monotonic() < deadline, answer.text
        time.sleep(1)
    assert _code(answer) == "consent_required", answer.text


def _stream_refusal(rec: Api, sid: str) -> tuple[dict[str, Any], int]:
    ws = rec.stream(sid)
    frame = json.loads(ws.recv(timeout=30))
    try:
        ws.recv(timeout=30)
    except ConnectionClosed:
        pass
    return frame, ws.close_code or 0


def _refused_everywhere(stack: Any, rec: Api, sid: str, version: str) -> None:
    """All four write paths answer consent_required naming `version`."""
    answers = [
        rec.http.post("/v1/sessions", json={"type": "human", "task": "refused"}),
        rec.post_events(sid, [click_event(1000)]),
        rec.http.put(f"/v1/sessions/{sid}/screenshots/refused", content=page_png(7), headers=PNG),
    ]
    for answer in answers:
        assert answer.status_code == 403 and _code(answer) == "consent_required", answer.text
        assert answer.json()["error"]["details"][0]["version"] == version
    frame, close = _stream_refusal(rec, sid)
    assert frame["type"] == "error" and frame["error"]["code"] == "consent_required", frame
    assert frame["error"]["details"][0]["version"] == version and close == 4403


def test_without_consent_nothing_is_recorded(stack: Any, org: Org) -> None:
    recorder, rec = _recorder(stack, org)
    key_id = run_db(stack, "SELECT key_id FROM api_keys WHERE recorder_id = $1", recorder)[0][0]
    # A session of the recorder's (as if made before consent was required): the write paths reach it.
    sid = uuid.uuid4()
    run_db(stack, "INSERT INTO sessions (session_id, org_id, workspace_id, type, request_hash, created_by_key,"
                  " recorder_id) VALUES ($1, $2, $3, 'human', '\\x00', $4, $5)",
           sid, org.org_id, org.workspace_id, key_id, recorder)
    answer = rec.http.get("/v1/consent")
    assert answer.status_code == 200, answer.text
    state = answer.json()
    assert state["recorder_id"] == str(recorder) and state["current"] is None and state["required"] is True
    notice = rec.http.get("/v1/consent/notice").json()
    assert notice["version"] == state["notice_version"] == "default-1" and notice["required"] and notice["recorded"]
    _refused_everywhere(stack, rec, str(sid), "default-1")
    assert _stored(stack, recorder) == (1, 0, 0)
    assert not [p for p in (stack.state_dir / "objects").rglob("*") if str(sid) in str(p)]
    # A key without a recorder (the scripts' kind) needs no consent in the same workspace.
    script = Api(stack.endpoint, make_key(stack, ["ingest"], org_id=org.org_id))
    assert script.http.post("/v1/sessions", json={"type": "automated"}).status_code == 201
    assert _code(script.http.post("/v1/consent", json={"version": "default-1"})) == "no_recorder"


def test_agree_record_withdraw(stack: Any, org: Org) -> None:
    recorder, rec = _recorder(stack, org)
    stale = rec.http.post("/v1/consent", json={"version": "default-0"})
    assert stale.status_code == 409 and _code(stale) == "notice_changed"
    assert stale.json()["error"]["details"][0]["version"] == "default-1"
    for bad in ({}, {"version": 1}, {"version": "default-1", "granted": True}):
        assert rec.http.post("/v1/consent", json=bad).status_code == 422
    assert rec.http.delete("/v1/consent").status_code == 404  # nothing to withdraw yet
    assert run_db(stack, "SELECT count(*) FROM consent_records WHERE recorder_id = $1", recorder)[0][0] == 0

    agreed = rec.http.post("/v1/consent", json={"version": "default-1"})
    assert agreed.status_code == 201, agreed.text
    assert agreed.json()["recorder_id"] == str(recorder) and agreed.json()["withdrawn_at"] is None
    state = rec.http.get("/v1/consent").json()
    assert state["current"]["version"] == "default-1" and state["required"] is False
    sid = rec.create_session(type="human", task="consented")
    assert rec.post_events(sid, [click_event(0)]).status_code == 200
    put = rec.http.put(f"/v1/sessions/{sid}/screenshots/s1", content=page_png(11), headers=PNG)
    assert put.status_code == 201, put.text
    with rec.stream(sid) as ws:
        assert send_frame(ws, [click_event(1)])["type"] == "ack"
    assert _stored(stack, recorder) == (1, 2, 1)

    withdrawn = rec.http.delete("/v1/consent")
    assert withdrawn.status_code == 200 and withdrawn.json()["withdrawn_at"] is not None
    again = rec.http.delete("/v1/consent")
    assert again.status_code == 200 and again.json() == withdrawn.json()  # idempotent
    # The replica that took the withdrawal refuses at once; another that remembered the consent
    # refuses within auth.cache_ttl_s. Each probe repeats one id (a session id, a seq, a
    # screenshot id), so an answer allowed meanwhile stores one item at most.
    probe = str(uuid.uuid4())
    _until_refused(stack, lambda: rec.http.post("/v1/sessions", json={"session_id": probe, "type": "human"}))
    _until_refused(stack, lambda: rec.post_events(sid, [click_event(500)]))
    _until_refused(stack, lambda: rec.http.put(f"/v1/sessions/{sid}/screenshots/late", content=page_png(12),
                                               headers=PNG))
    before = _stored(stack, recorder)
    _refused_everywhere(stack, rec, sid, "default-1")
    assert _stored(stack, recorder) == before
    assert rec.http.get("/v1/consent").json()["current"] is None

    history = rec.http.get("/v1/consent").json()["history"]
    assert [(h["version"], h["withdrawn_at"] is not None) for h in history] == [("default-1", True)]
    audit = run_db(stack, "SELECT action, details FROM audit_log WHERE target = $1 ORDER BY audit_id", str(recorder))
    assert [a["action"] for a in audit] == ["consent.agree", "consent.withdraw"]


def test_only_admins_set_the_notice_and_bad_notices_change_nothing(stack: Any, org: Org) -> None:
    recorder, rec = _recorder(stack, org)
    assert rec.http.post("/v1/consent", json={"version": "default-1"}).status_code == 201
    version = f"v-{uuid.uuid4().hex[:8]}"
    notice = {"version": version, "text": "We record the shop pages you visit.", "required": True,
              "recorded": ["pages", "clicks"], "masked": ["passwords"], "retention_days": 30}
    path = f"/v1/workspaces/{org.workspace_id}/notice"
    refused = rec.http.put(path, json=notice)
    assert refused.status_code == 403 and _code(refused) == "forbidden"
    for bad in ({**notice, "required": "yes"}, {**notice, "version": "has space"}, {**notice, "text": ""},
                {**notice, "retention_days": 0}, {**notice, "extra": 1}, {"version": version}):
        answer = org.admin.http.put(path, json=bad)
        assert answer.status_code == 422 and _code(answer) == "invalid_input", answer.text
    assert org.admin.http.put(f"/v1/workspaces/{uuid.uuid4()}/notice", json=notice).status_code == 404
    assert rec.http.get("/v1/consent/notice").json()["version"] == "default-1"  # unchanged

    made = org.admin.http.put(path, json=notice)
    assert made.status_code == 200, made.text
    assert made.json() == {**notice, "workspace_id": str(org.workspace_id)}
    assert org.admin.http.put(path, json=notice).json() == made.json()  # the same content again: no change
    taken = org.admin.http.put(path, json={**notice, "text": "Something else."})
    assert taken.status_code == 409 and _code(taken) == "notice_version_taken"
    assert rec.http.get("/v1/consent/notice").json() == made.json()
    # The recorder agreed to the old version: that consent no longer counts, and agreeing to it is stale.
    state = rec.http.get("/v1/consent").json()
    assert state["current"] is None and state["notice_version"] == version and state["required"] is True
    stale = rec.http.post("/v1/consent", json={"version": "default-1"})
    assert stale.status_code == 409 and _code(stale) == "notice_changed"
    assert rec.http.post("/v1/consent", json={"version": version}).status_code == 201
    assert rec.http.get("/v1/consent").json()["current"]["version"] == version
    updates = run_db(stack, "SELECT details FROM audit_log WHERE action = 'notice.update' AND target = $1",
                     str(org.workspace_id))
    assert len(updates) == 2 and all(json.loads(u["details"])["version"] == version for u in updates)
