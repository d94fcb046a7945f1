"""Which sessions a caller may touch: those of its workspace and, to write without
`sessions.write_all` (a recorder key), only those its key or its recorder created. Another's
session answers 404, exactly as one that does not exist.

A session's owner (organisation, workspace, creating key and recorder) never changes once the
row exists, so each replica remembers it: the write path (events, screenshots, finish, the
stream) checks ownership without a query per batch.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import asyncpg

from actors.auth import Principal
from actors.errors import NotFound
from actors.storage.postgres import with_retries

__all__ = ["Owner", "SessionOwners", "visible"]


class Owner(NamedTuple):
    org_id: uuid.UUID
    workspace_id: uuid.UUID
    created_by_key: uuid.UUID | None
    recorder_id: uuid.UUID | None


def visible(principal: Principal, row: Any) -> bool:
    """Whether a session row (with the owner columns) is the caller's to read."""
    return row["org_id"] == principal.org_id and principal.owns_session(
        row["workspace_id"], row["created_by_key"], row["recorder_id"], write=False)


@dataclass
class SessionOwners:
    max_entries: int = 50_000
    _entries: OrderedDict[uuid.UUID, Owner] = field(default_factory=OrderedDict, repr=False)

    def remember(self, session_id: uuid.UUID, owner: Owner) -> None:
        self._entries[session_id] = owner
        self._entries.move_to_end(session_id)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def forget(self, session_id: uuid.UUID) -> None:
        """A deleted session: writes to it are refused from now on (in this replica at once;
        another replica refuses once the entry leaves its cache, and the purge removes what it
        wrote meanwhile)."""
        self._entries.pop(session_id, None)

    async def owner(self, pool: asyncpg.Pool, session_id: uuid.UUID) -> Owner | None:
        hit = self._entries.get(session_id)
        if hit is not None:
            self._entries.move_to_end(session_id)
            return hit
        row = await with_retries(
            lambda: pool.fetchrow("SELECT org_id, workspace_id, created_by_key, recorder_id FROM sessions"
                                  " WHERE session_id = $1 AND deleted_at IS NULL", session_id),
            attempts=2, what="session owner")
        if row is None:
            return None  # not remembered: it may be created in a moment
        owner = Owner(row["org_id"], row["workspace_id"], row["created_by_key"], row["recorder_id"])
        self.remember(session_id, owner)
        return owner

    async def check(self, pool: asyncpg.Pool, principal: Principal, session_id: uuid.UUID) -> None:
        """NotFound unless the caller may write to this session."""
        owner = await self.owner(pool, session_id)
        if owner is None or owner.org_id != principal.org_id or not principal.owns_session(
                owner.workspace_id, owner.created_by_key, owner.recorder_id):
            raise NotFound(f"no session {session_id}")
