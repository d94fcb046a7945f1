"""The planted-PII corpus (≥ 50 values of every type) streamed through the whole pipeline:
after finalisation none of it is in the database, the object store, the archive or the logs."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from typing import Any

import ray

from tests.support.stack import run_db
from tests.integration.test_processing import wait_terminal
from tests.support.client import Api, new_id, send_frame
from tests.support.pii_corpus import Planted, forms, planted_corpus, planted_session
from tests.support.sessions import VIEWPORT, page_png


def database_dump(stack: Any) -> dict[str, str]:
    """Every public table's rows as text, by table, so a failure names the table that leaked."""
    tables = [r["tablename"] for r in run_db(stack, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    assert {"interactions", "sessions", "screenshots", "privacy_audit", "vision_calls"} <= set(tables)
    dumps = {}
    for table in tables:
        rows = run_db(stack, f'SELECT coalesce(string_agg(t::text, chr(10)), \'\') AS dump FROM "{table}" t')
        dumps[f"database table {table}"] = rows[0]["dump"]
    return dumps


def store_dump(root: Path) -> str:
    """Every object's bytes as text, and every archive's entries unpacked."""
    parts = []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        parts.append(data.decode("utf-8", "replace"))
        # Other tests leave objects named .zip that are no archive (bad-input uploads, withdrawn
        # files); their bytes are searched all the same. This session's archive is checked below.
        if path.suffix == ".zip" and zipfile.is_zipfile(io.BytesIO(data)):
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                parts += [zf.read(name).decode("utf-8", "replace") for name in zf.namelist()]
    return "\n".join(parts)


def logs_dump() -> str:
    session_dir = Path(ray._private.worker._global_node.get_session_dir_path())
    return "\n".join(p.read_text("utf-8", "replace") for p in (session_dir / "logs").rglob("*") if p.is_file())


def test_planted_pii_is_nowhere_after_finalisation(api: Api, stack: Any) -> None:
    planted, events = planted_corpus()
    in_session = Planted()  # task, user agent, client and metadata: redacted, not audited as events
    body = {"session_id": new_id(), "type": "human", "viewport": VIEWPORT, **planted_session(in_session)}
    first = api.http.post("/v1/sessions", json=body)
    assert first.status_code == 201, first.text
    sid = first.json()["session_id"]
    again = api.http.post("/v1/sessions", json=body)  # idempotent although stored redacted
    assert (again.status_code, again.json()) == (200, {"session_id": sid, "status": "recording"})
    other = api.http.post("/v1/sessions", json={**body, "metadata": {"plan": "free"}})
    assert other.status_code == 409 and other.json()["error"]["code"] == "session_conflict"
    stored = api.session(sid)
    assert stored["task"] == "Email [EMAIL] the invoice, then call [PHONE]; pay with [CARD]", stored
    with api.stream(sid) as ws:
        ack = send_frame(ws, events)
    assert ack["type"] == "ack" and ack["acked_through"] == len(events) - 1, ack
    put = api.http.put(f"/v1/sessions/{sid}/screenshots/checkout", params={"seq": 10},
                       content=page_png(3), headers={"Content-Type": "image/png"})
    assert put.status_code == 201
    assert api.http.post(f"/v1/sessions/{sid}/finish").status_code == 202
    assert wait_terminal(api, sid)["status"] in ("ready", "rejected")
    # the archive must exist, or the check below would pass for lack of an archive
    archive = api.http.get(f"/v1/sessions/{sid}/archive")
    assert archive.status_code == 200 and zipfile.is_zipfile(io.BytesIO(archive.content))  # unpacked below

    places = {**database_dump(stack), "object store and archives": store_dump(stack.settings.object_store.local_dir),
              "logs": logs_dump()}
    checked = [(kind, v) for kind, v, check in planted.values + in_session.values if check]
    assert len({v for _, v in checked}) >= 60
    for where, text in places.items():
        for kind, value in checked:
            if where == "logs" and re.fullmatch(r"\d{1,8}", value):
                continue  # a short number in a log line is a port or a pid, not a leak
            leaked = [f for f in forms(value) if f in text]
            assert not leaked, f"{kind} value found in the {where}"

    audit = {r["kind"]: r["count"] for r in run_db(
        stack, "SELECT kind, count FROM privacy_audit WHERE session_id = $1 AND source = 'events'", sid)}
    assert audit == dict(planted.counts)  # counts per type, exactly what was planted
