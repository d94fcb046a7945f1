"""Migrations against a fresh database: applied once, re-run as a no-op, a failure rolled back."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from actors.errors import MigrationFailed
from actors.storage.postgres import apply_migrations
from tests.support.stack import run_db


@pytest.fixture()
def fresh_dsn(stack: Any) -> str:
    name = f"mig_{uuid.uuid4().hex[:12]}"
    run_db(stack, f'CREATE DATABASE "{name}"')
    parts = urlsplit(stack.settings.database.url.get_secret_value())
    return urlunsplit(parts._replace(path=f"/{name}"))


def tables(dsn: str) -> set[str]:
    async def go() -> set[str]:
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            return {r["tablename"] for r in rows}
        finally:
            await conn.close()

    return asyncio.run(go())


def test_packaged_migrations_apply_once(fresh_dsn: str) -> None:
    applied = asyncio.run(apply_migrations(fresh_dsn))
    assert applied[:6] == ["0001_ingest.sql", "0002_processing.sql", "0003_recent_sessions.sql",
                           "0004_training.sql", "0005_quotas.sql", "0006_key_security.sql"]
    assert "0009_workspaces_roles.sql" in applied and applied == sorted(applied)  # later ones: each helper's
    assert {"organizations", "api_keys", "sessions", "interactions", "screenshots", "datasets", "finetunes",
            "finetune_events", "finetune_checkpoints", "models", "evaluations", "org_quotas",
            "quota_usage"} <= tables(fresh_dsn)
    assert asyncio.run(apply_migrations(fresh_dsn)) == []


def test_a_failing_migration_rolls_back_and_names_itself(fresh_dsn: str, tmp_path: Path) -> None:
    (tmp_path / "0001_good.sql").write_text("CREATE TABLE good (id int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE half (id int); SELECT * FROM no_such_table;")
    with pytest.raises(MigrationFailed, match="0002_bad.sql"):
        asyncio.run(apply_migrations(fresh_dsn, tmp_path))
    assert "good" in tables(fresh_dsn) and "half" not in tables(fresh_dsn)
    (tmp_path / "0001_good.sql").write_text("CREATE TABLE good (id bigint);")
    with pytest.raises(MigrationFailed, match="changed after it was applied"):
        asyncio.run(apply_migrations(fresh_dsn, tmp_path))
