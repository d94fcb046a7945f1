"""One Ray cluster, one embedded PostgreSQL and one Serve deployment for the whole run,
started by the same code as `tracemill up` (cluster.local.LocalStack)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, Iterator

import asyncpg
import pytest

from actors import auth
from tests.support.client import Api
from tests.support.net import free_port


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from cluster.local import LocalStack

    env = {k: v for k, v in os.environ.items() if k not in ("TRACEMILL_S3_BUCKET",)}
    state = Path(tmp_path_factory.mktemp("tracemill-state"))
    stack = LocalStack(state_dir=state, port=free_port(), num_cpus=2, env=env)
    stack.start()
    yield stack
    stack.stop()


def run_db(stack: Any, query: str, *args: Any) -> list[asyncpg.Record]:
    """Run one query against the stack's database from synchronous test code."""

    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(stack.settings.database.url.get_secret_value())
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    return asyncio.run(go())


def make_key(stack: Any, scopes: list[str], org_id: Any = auth.DEFAULT_ORG_ID) -> str:
    async def go() -> str:
        pool = await asyncpg.create_pool(stack.settings.database.url.get_secret_value(), min_size=0, max_size=1)
        try:
            return (await auth.create_key(pool, scopes=scopes, org_id=org_id, name="test"))[1]
        finally:
            await pool.close()

    return asyncio.run(go())


@pytest.fixture(scope="session")
def api(stack: Any) -> Api:
    return Api(stack.endpoint, make_key(stack, ["ingest", "read"]))


@pytest.fixture(scope="session")
def other_org_api(stack: Any) -> Api:
    """A client of a second organisation: it must never see the first one's sessions."""
    import uuid

    org = uuid.uuid4()
    run_db(stack, "INSERT INTO organizations (org_id, name) VALUES ($1, $2)", org, f"other-{org}")
    return Api(stack.endpoint, make_key(stack, ["ingest", "read"], org_id=org))
