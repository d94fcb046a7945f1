"""Databases beside the stack's: a pool for a moment, a fresh empty database, and the packaged
migrations up to a number (to build a schema as it was before a migration and upgrade it)."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from tests.support.stack import run_db

__all__ = ["fresh_database", "migrations_until", "with_pool"]


def with_pool(stack: Any, work: Any, max_size: int = 2) -> Any:
    """`await work(pool)` on a small pool of the stack's database, opened and closed around it."""
    async def go() -> Any:
        pool = await asyncpg.create_pool(stack.settings.database.url.get_secret_value(), min_size=0,
                                         max_size=max_size)
        try:
            return await work(pool)
        finally:
            await pool.close()

    return asyncio.run(go())


def fresh_database(stack: Any, prefix: str) -> str:
    """The DSN of a new, empty database on the stack's server."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    run_db(stack, f'CREATE DATABASE "{name}"')
    return urlunsplit(urlsplit(stack.settings.database.url.get_secret_value())._replace(path=f"/{name}"))


def migrations_until(folder: Path, last: int) -> Path:
    """A folder holding copies of the packaged migrations numbered up to `last`."""
    folder.mkdir()
    for entry in resources.files("actors.storage").joinpath("migrations").iterdir():
        if entry.name.endswith(".sql") and int(entry.name.split("_", 1)[0]) <= last:
            shutil.copyfile(str(entry), folder / entry.name)
    return folder
