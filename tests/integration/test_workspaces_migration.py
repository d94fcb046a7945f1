"""Migration 0009 on a database with data: rows of every organisation move into its default
workspace, old keys get the role their scopes map to, and rows written afterwards without a
workspace get their parent's (or the default) from the triggers."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from actors.storage.postgres import apply_migrations
from tests.support.databases import fresh_database, migrations_until

pytestmark = pytest.mark.integration


def _fresh(stack: Any) -> str:
    return fresh_database(stack, "ws")


_migrations_until = migrations_until


async def _scenario(dsn: str, before: Path) -> None:
    await apply_migrations(dsn, before)  # the schema as it was before workspaces
    conn = await asyncpg.connect(dsn)
    try:
        org = uuid.uuid4()
        await conn.execute("INSERT INTO organizations (org_id, name) VALUES ($1, 'old')", org)
        keys = {}
        for scopes in (["ingest"], ["read"], ["ingest", "read"], ["ingest", "read", "admin"]):
            key_id = uuid.uuid4()
            await conn.execute(
                "INSERT INTO api_keys (key_id, org_id, lookup_id, key_hmac, scopes) VALUES ($1, $2, $3, $4, $5)",
                key_id, org, uuid.uuid4().hex[:16], bytes(32), scopes)
            keys[",".join(scopes)] = key_id
        session = uuid.uuid4()
        await conn.execute("INSERT INTO sessions (session_id, org_id, type, request_hash) VALUES ($1, $2, 'human', $3)",
                           session, org, b"x")
        await conn.execute(
            "INSERT INTO screenshots (session_id, screenshot_id, content_type, bytes, width, height, sha256)"
            " VALUES ($1, 's', 'image/png', 1, 1, 1, 'x')", session)
        dataset = uuid.uuid4()
        await conn.execute("INSERT INTO datasets (dataset_id, org_id, name, config, code_version)"
                           " VALUES ($1, $2, 'd', '{}', 'v')", dataset, org)
    finally:
        await conn.close()

    await apply_migrations(dsn)  # now with 0009 and whatever follows
    conn = await asyncpg.connect(dsn)
    try:
        default = await conn.fetchval("SELECT workspace_id FROM workspaces WHERE org_id = $1 AND is_default", org)
        assert default is not None
        assert await conn.fetchval("SELECT workspace_id FROM workspaces WHERE org_id = $1::uuid AND is_default",
                                   uuid.UUID("00000000-0000-0000-0000-000000000001")) == \
            uuid.UUID("00000000-0000-0000-0001-000000000001")
        roles = {r["key_id"]: (r["role"], r["workspace_id"]) for r in await conn.fetch("SELECT * FROM api_keys")}
        assert roles[keys["ingest"]] == ("recorder", default)
        assert roles[keys["read"]] == ("analyst", default)
        assert roles[keys["ingest,read"]] == ("recorder", default)
        assert roles[keys["ingest,read,admin"]] == ("admin", default)
        for table in ("sessions", "screenshots", "datasets"):
            assert await conn.fetchval(f"SELECT workspace_id FROM {table}") == default, table
        # Written afterwards without a workspace: the parent's, else the organisation's default.
        other = await conn.fetchval("INSERT INTO workspaces (workspace_id, org_id, name) VALUES ($1, $2, 'b')"
                                    " RETURNING workspace_id", uuid.uuid4(), org)
        s2 = uuid.uuid4()
        await conn.execute("INSERT INTO sessions (session_id, org_id, type, request_hash, workspace_id)"
                           " VALUES ($1, $2, 'human', $3, $4)", s2, org, b"y", other)
        await conn.execute(
            "INSERT INTO screenshots (session_id, screenshot_id, content_type, bytes, width, height, sha256)"
            " VALUES ($1, 's', 'image/png', 1, 1, 1, 'x')", s2)
        assert await conn.fetchval("SELECT workspace_id FROM screenshots WHERE session_id = $1", s2) == other
        ft = uuid.uuid4()
        await conn.execute("INSERT INTO finetunes (finetune_id, org_id, dataset_id, provider, base_model, settings)"
                           " VALUES ($1, $2, $3, 'openai', 'm', '{}')", ft, org, dataset)
        assert await conn.fetchval("SELECT workspace_id FROM finetunes WHERE finetune_id = $1", ft) == default
        # A workspace of another organisation is refused (the composite foreign key).
        stranger = uuid.uuid4()
        await conn.execute("INSERT INTO organizations (org_id, name) VALUES ($1, 'stranger')", stranger)
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await conn.execute("INSERT INTO sessions (session_id, org_id, type, request_hash, workspace_id)"
                               " VALUES ($1, $2, 'human', $3, $4)", uuid.uuid4(), stranger, b"z", other)
    finally:
        await conn.close()


def test_existing_data_moves_into_the_default_workspace(stack: Any, tmp_path: Path) -> None:
    asyncio.run(_scenario(_fresh(stack), _migrations_until(tmp_path / "before", 8)))
