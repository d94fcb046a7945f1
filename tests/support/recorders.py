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
from tests.support.stack import run_db

__all__ = ["recorder_client"]


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
