"""Encryption at rest (issue 18.5) on the real stack. The session stack is started with a KEK and
scope "keyed" (tests/conftest.py), so only a workspace with a data key is encrypted: this test
gives a fresh organisation's workspace one and leaves every other test's data plain.

Planted values (a typed value, a URL host, a page title, an element's text) go in through the
real ingest (the stream, a shard's group commit); PostgreSQL's files (tables and WAL, after a
CHECKPOINT) hold none of them, while a value planted in a plain column of the same session
(the task) is found there, so the grep sees what was written. The events API returns the
values in plain text. `tracemill keys rotate-data-key` then moves every row to a new key while
events keep arriving and being read, retires the old key, and reads still work."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from actors.crypto.event_fields import is_encrypted_row, row_key_ids
from actors.crypto.keyring import Keyring
from actors.crypto.kek import kek_from_settings
from tests.support.client import Api, click_event, new_id, send_frame
from tests.support.sessions import VIEWPORT, shop_session
from tests.support.stack import make_key, run_db

pytestmark = pytest.mark.integration

TYPED = "xylograph-ocelot-typed-5521"
HOST = "quillwort-heron-5521.example"
TITLE = "Vermilion Aardwolf Checkout 5521"
TEXT = "Ptarmigan Button 5521"
TASK = "plain-task-marker-zebu-5521"  # the positive control: the task column is not encrypted


def _planted() -> list[dict[str, Any]]:
    events, _ = shop_session(n_events=30, n_screens=0)
    for event in events:
        if event.get("value") == "kettle":
            event["value"] = TYPED
        if isinstance(event.get("url"), str):
            event["url"] = event["url"].replace("shop.example", HOST)
        if event.get("title"):
            event["title"] = TITLE
    events.append(click_event(len(events), url=f"https://{HOST}/p/1", title=TITLE,
                              target={"tag": "button", "text": TEXT, "selectors": [
                                  {"kind": "css", "value": "#buy", "unique": True}]}))
    return events


def _db(stack: Any, fn: Any) -> Any:
    async def go() -> Any:
        conn = await asyncpg.connect(stack.settings.database.url.get_secret_value())
        try:
            return await fn(conn)
        finally:
            await conn.close()
    return asyncio.run(go())


def _grep(root: Path, needles: list[str]) -> list[str]:
    args = ["grep", "-rlaF"] + [a for n in needles for a in ("-e", n)] + [str(root)]
    return subprocess.run(args, capture_output=True, text=True).stdout.split()


def _stored(stack: Any, sid: str) -> list[dict[str, Any]]:
    rows = run_db(stack, "SELECT seq, url, target::text AS target, payload::text AS payload FROM interactions"
                         " WHERE session_id = $1 ORDER BY seq", uuid.UUID(sid))
    return [dict(r) for r in rows]


def _events(api: Api, sid: str) -> list[dict[str, Any]]:
    response = api.http.get(f"/v1/sessions/{sid}/events", params={"limit": 1000})
    assert response.status_code == 200, response.text
    return list(response.json()["events"])


@pytest.fixture(scope="module")
def encrypted(stack: Any) -> tuple[Api, uuid.UUID]:
    """A client of a fresh organisation whose workspace has a data key (encryption on)."""
    org = uuid.uuid4()
    run_db(stack, "INSERT INTO organizations (org_id, name) VALUES ($1, $2)", org, f"encrypted-{org}")
    workspace = run_db(stack, "SELECT workspace_id FROM workspaces WHERE org_id = $1", org)[0]["workspace_id"]
    kek = kek_from_settings(stack.settings.encryption)
    assert kek is not None, "the test stack is started with a KEK (tests/conftest.py)"
    _db(stack, lambda conn: Keyring(stack.settings.encryption, kek).create_key(conn, workspace))
    return Api(stack.endpoint, make_key(stack, ["ingest", "read"], org_id=org)), workspace


def test_planted_values_are_not_in_postgres_files_and_read_back_plain(stack: Any, encrypted: Any) -> None:
    api, _ = encrypted
    sid = api.create_session(session_id=new_id(), viewport=VIEWPORT, task=TASK)
    events = _planted()
    with api.stream(sid) as ws:
        ack = send_frame(ws, events)
        assert ack["type"] == "ack" and ack["acked_through"] == len(events) - 1, ack

    stored = _stored(stack, sid)
    assert len(stored) == len(events) and all(is_encrypted_row(r) for r in stored)
    text = repr(stored)
    assert not any(n in text for n in (TYPED, HOST, TITLE, TEXT))

    _db(stack, lambda conn: conn.execute("CHECKPOINT"))
    pgdata = Path(stack.state_dir) / "pgdata"
    assert _grep(pgdata, [TASK]), "positive control: the plain task is in the data files"
    assert _grep(pgdata, [TYPED, HOST, TITLE, TEXT]) == []

    read = _events(api, sid)
    assert [e["seq"] for e in read] == list(range(len(events)))
    typed = [e["value"] for e in read if e.get("value") == TYPED]
    assert typed and read[0]["url"].startswith(f"https://{HOST}/") and read[0]["title"] == TITLE
    assert read[-1]["target"]["text"] == TEXT


def test_rotation_re_encrypts_without_downtime(stack: Any, encrypted: Any) -> None:
    api, workspace = encrypted
    sid = api.create_session(session_id=new_id(), viewport=VIEWPORT)
    events = _planted()
    with api.stream(sid) as ws:
        assert send_frame(ws, events[:20])["type"] == "ack"
        old_keys = set().union(*(row_key_ids(r) for r in _stored(stack, sid)))
        assert len(old_keys) == 1

        env = {**os.environ, "DATABASE_URL": stack.settings.database.url.get_secret_value(),
               "TRACEMILL_ENCRYPTION_KEK": stack.settings.encryption.kek.get_secret_value()}
        rotation = subprocess.Popen(
            [sys.executable, "-m", "cluster.cli", "keys", "rotate-data-key", "--workspace", str(workspace)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        failures: list[str] = []

        def keep_reading() -> None:
            while rotation.poll() is None:
                try:
                    read = _events(api, sid)
                    if not any(e.get("value") == TYPED for e in read):
                        failures.append("a read lost the typed value")
                except AssertionError as exc:
                    failures.append(str(exc)[:200])

        reader = threading.Thread(target=keep_reading)
        reader.start()
        assert send_frame(ws, events[20:])["type"] == "ack"  # writes go on during the rotation
        out, err = rotation.communicate(timeout=120)
        reader.join()
    assert rotation.returncode == 0, err
    assert "rows re-encrypted" in out and failures == []

    stored = _stored(stack, sid)
    keys = set().union(*(row_key_ids(r) for r in stored))
    assert len(stored) == len(events) and len(keys) == 1 and keys.isdisjoint(old_keys)
    retired = run_db(stack, "SELECT retired_at FROM data_keys WHERE key_id = $1", next(iter(old_keys)))
    assert retired[0]["retired_at"] is not None
    read = _events(api, sid)
    assert len(read) == len(events) and any(e.get("value") == TYPED for e in read)
    assert read[-1]["target"]["text"] == TEXT
