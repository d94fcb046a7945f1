"""SQL for organisations, their workspaces and recorders (migration 0009).

Every organisation has a default workspace (a trigger makes it with the organisation); a
recorder is the person or extension install behind a key, named within its workspace.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from actors.errors import Conflict, InvalidInput, NotFound

__all__ = ["create_org", "create_workspace", "default_workspace", "list_orgs", "list_workspaces",
           "recorder_named", "workspace_of_org"]

Conn = asyncpg.Connection | asyncpg.Pool
MAX_NAME_CHARS = 100


def _name(name: str, what: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= MAX_NAME_CHARS or not name.isprintable():
        raise InvalidInput(f"a {what} name is 1-{MAX_NAME_CHARS} printable characters",
                           [{"field": "name", "error": f"1-{MAX_NAME_CHARS} printable characters"}])
    return name


async def create_org(conn: Conn, name: str) -> tuple[uuid.UUID, uuid.UUID]:
    """A new organisation and (by the trigger) its default workspace: (org_id, workspace_id)."""
    org_id = uuid.uuid4()
    try:
        await conn.execute("INSERT INTO organizations (org_id, name) VALUES ($1, $2)", org_id, _name(name, "organisation"))
    except asyncpg.UniqueViolationError:
        raise Conflict(f"an organisation named {name!r} exists", code="org_exists") from None
    return org_id, await default_workspace(conn, org_id)


async def list_orgs(conn: Conn, org_id: uuid.UUID | None = None) -> list[asyncpg.Record]:
    """Every organisation (the operator's CLI), or only `org_id`'s."""
    return list(await conn.fetch(
        "SELECT o.org_id, o.name, o.created_at, count(w.workspace_id) AS workspaces FROM organizations o"
        " LEFT JOIN workspaces w ON w.org_id = o.org_id WHERE $1::uuid IS NULL OR o.org_id = $1"
        " GROUP BY o.org_id ORDER BY o.created_at", org_id))


async def default_workspace(conn: Conn, org_id: uuid.UUID) -> uuid.UUID:
    workspace_id = await conn.fetchval("SELECT workspace_id FROM workspaces WHERE org_id = $1 AND is_default", org_id)
    if workspace_id is None:
        raise NotFound(f"no organisation {org_id}")
    return workspace_id


async def create_workspace(conn: Conn, org_id: uuid.UUID, name: str) -> asyncpg.Record:
    try:
        row = await conn.fetchrow(
            "INSERT INTO workspaces (workspace_id, org_id, name) VALUES ($1, $2, $3)"
            " RETURNING workspace_id, org_id, name, is_default, created_at",
            uuid.uuid4(), org_id, _name(name, "workspace"))
    except asyncpg.UniqueViolationError:
        raise Conflict(f"the organisation has a workspace named {name!r}", code="workspace_exists") from None
    except asyncpg.ForeignKeyViolationError:
        raise NotFound(f"no organisation {org_id}") from None
    assert row is not None
    return row


async def list_workspaces(conn: Conn, org_id: uuid.UUID) -> list[asyncpg.Record]:
    return list(await conn.fetch(
        "SELECT workspace_id, org_id, name, is_default, created_at FROM workspaces WHERE org_id = $1"
        " ORDER BY is_default DESC, created_at", org_id))


async def workspace_of_org(conn: Conn, org_id: uuid.UUID, ref: str | uuid.UUID) -> uuid.UUID:
    """A workspace of this organisation, by id or by name; another organisation's is not found."""
    try:
        workspace_id: Any = await conn.fetchval(
            "SELECT workspace_id FROM workspaces WHERE org_id = $1 AND workspace_id = $2", org_id, uuid.UUID(str(ref)))
    except ValueError:
        workspace_id = await conn.fetchval(
            "SELECT workspace_id FROM workspaces WHERE org_id = $1 AND name = $2", org_id, str(ref))
    if workspace_id is None:
        raise NotFound(f"no workspace {str(ref)[:100]!r} in this organisation")
    return workspace_id


async def recorder_named(conn: Conn, org_id: uuid.UUID, workspace_id: uuid.UUID, name: str) -> uuid.UUID:
    """The workspace's recorder of this name, made the first time it is named."""
    name = _name(name, "recorder")
    recorder_id = await conn.fetchval(
        "INSERT INTO recorders (recorder_id, org_id, workspace_id, name) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (workspace_id, name) DO NOTHING RETURNING recorder_id",
        uuid.uuid4(), org_id, workspace_id, name)
    if recorder_id is None:
        recorder_id = await conn.fetchval(
            "SELECT recorder_id FROM recorders WHERE workspace_id = $1 AND name = $2", workspace_id, name)
    return recorder_id
