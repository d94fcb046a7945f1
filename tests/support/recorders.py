"""A recorder (a recorded person) in the default workspace and a client holding a recorder key
bound to it, as the extension has; where the deployment asks for consent (issue 18.1), the
client has agreed to the workspace's current notice, so it may record."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg

from actors import auth
from tests.support.client import Api
from tests.support.sessions import page_png, shop_session, wait_terminal
from tests.support.stack import run_db

__all__ = ["record_finished", "recorder_client"]


def recorder_client(stack: Any, name: str = "laptop") -> tuple[uuid.UUID, Api]:
    recorder = uuid.uuid4()
    ws = run_db(stack, "SELECT workspace_id FROM workspaces WHERE org_id = $1 AND is_default", auth.DEFAULT_ORG_ID)[0][0]
    run_db(stack, "INSERT INTO recorders (recorder_id, org_id, workspace_id, name) VALUES ($1, $2, $3, $4)",
           recorder, auth.DEFAULT_ORG_ID, ws, f"{name} {recorder}")

    async def key() -> str:
        conn = await asyncpg.connect(stack.settings.database.url.get_secret_value())
        try:
            return (await auth.create_key(conn, role="recorder", org_id=auth.DEFAULT_ORG_ID, workspace_id=ws,
                                          recorder_id=recorder, name="rec", pepper=auth.pepper_of(stack.settings.auth)))[1]
        finally:
            await conn.close()

    client = Api(stack.endpoint, asyncio.run(key()))
    notice = client.http.get("/v1/consent/notice")
    if notice.status_code == 200:  # a deployment with consent: agree, as the extension asks the person to
        agreed = client.http.post("/v1/consent", json={"version": notice.json()["version"]})
        assert agreed.status_code == 201, agreed.text
    return recorder, client


def record_finished(rec: Api, reader: Api, n: int, task: str) -> tuple[list[str], list[str]]:
    """`n` sessions of 20 events and one screenshot each, recorded by `rec` and finished: their
    ids and the terminal statuses `reader` saw (archives and painted WebPs written by then)."""
    events, _ = shop_session(n_events=20, n_screens=1)
    png = page_png(3)
    sids = []
    for _ in range(n):
        sid = rec.create_session(task=task)
        sids.append(sid)
        assert rec.post_events(sid, events).status_code == 200
        assert rec.http.put(f"/v1/sessions/{sid}/screenshots/s1", content=png,
                            headers={"Content-Type": "image/png"}).status_code == 201
        assert rec.http.post(f"/v1/sessions/{sid}/finish", json={"outcome": "success"}).status_code == 202
    return sids, [wait_terminal(reader, sid, timeout=600)["status"] for sid in sids]
