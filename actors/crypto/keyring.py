"""Workspaces' data keys: made, wrapped by the KEK and stored in `data_keys`; unwrapped on first
use and then kept in this process's memory only (never in Ray's object store, a log or a row).

One Keyring per process, installed from the settings where a process gets them (the shard, the
ingress, a task's resources, a job driver's settings); readers then find it with `current()`.
A process with no KEK has no keyring: it writes plain values, and meeting an encrypted one is a
DataKeyUnavailable error, never a guess.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import OrderedDict
from typing import Any

import asyncpg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from actors.crypto.envelope import DATA_KEY_BYTES
from actors.crypto.kek import Kek, kek_from_settings
from actors.errors import DataKeyUnavailable
from configs.encryption import EncryptionSettings

__all__ = ["Keyring", "current", "install"]

Conn = asyncpg.Connection | asyncpg.Pool
_MAX_SESSIONS = 100_000  # session → workspace entries a writer remembers (a session's workspace never changes)


class Keyring:
    def __init__(self, settings: EncryptionSettings, kek: Kek):
        self.settings = settings
        self.kek = kek
        self._keys: dict[int, AESGCM] = {}
        self._active: dict[uuid.UUID, tuple[float, int | None]] = {}
        self._workspaces: OrderedDict[uuid.UUID, uuid.UUID] = OrderedDict()

    # -- reading ---------------------------------------------------------------------------

    async def key(self, conn: Conn, key_id: int) -> AESGCM:
        """The data key `key_id`, unwrapped (once per process)."""
        found = self._keys.get(key_id)
        if found is not None:
            return found
        row = await conn.fetchrow("SELECT workspace_id, wrapped, kek_ref FROM data_keys WHERE key_id = $1", key_id)
        if row is None:
            raise DataKeyUnavailable(f"data key {key_id} does not exist")
        if row["kek_ref"] != self.kek.ref:
            raise DataKeyUnavailable(
                f"data key {key_id} is wrapped by KEK {row['kek_ref']}, and this process holds {self.kek.ref}")
        aead = AESGCM(await self.kek.unwrap(bytes(row["wrapped"]), str(row["workspace_id"])))
        self._keys[key_id] = aead
        return aead

    # -- writing ---------------------------------------------------------------------------

    async def active_key(self, conn: Conn, workspace_id: uuid.UUID) -> int | None:
        """The id of the key new values of `workspace_id` are encrypted under; None when the
        workspace is not encrypted (scope "keyed" and no key). Cached for active_key_ttl_s."""
        now = time.monotonic()
        cached = self._active.get(workspace_id)
        if cached is not None and now - cached[0] < self.settings.active_key_ttl_s:
            return cached[1]
        key_id = await conn.fetchval(
            "SELECT key_id FROM data_keys WHERE workspace_id = $1 AND retired_at IS NULL"
            " ORDER BY created_at DESC, key_id DESC LIMIT 1", workspace_id)
        if key_id is None and self.settings.scope == "all":
            key_id = await self.create_key(conn, workspace_id, only_if_none=True)
        self._active[workspace_id] = (now, key_id)
        return key_id

    async def create_key(self, conn: Conn, workspace_id: uuid.UUID, *, only_if_none: bool = False) -> int:
        """A new data key for `workspace_id`, stored wrapped; it becomes the workspace's current
        key. `only_if_none`: the first key, made once however many writers race to make it."""
        data_key = os.urandom(DATA_KEY_BYTES)
        wrapped = await self.kek.wrap(data_key, str(workspace_id))
        async with _transaction(conn) as tx:
            # Serialise key creation per workspace, so racing first writers make one key.
            await tx.execute("SELECT pg_advisory_xact_lock(hashtextextended('tracemill data key ' || $1::text, 0))",
                             str(workspace_id))
            if only_if_none:
                existing = await tx.fetchval(
                    "SELECT key_id FROM data_keys WHERE workspace_id = $1 AND retired_at IS NULL"
                    " ORDER BY created_at DESC, key_id DESC LIMIT 1", workspace_id)
                if existing is not None:
                    return int(existing)
            key_id = int(await tx.fetchval(
                "INSERT INTO data_keys (workspace_id, wrapped, kek_ref) VALUES ($1, $2, $3) RETURNING key_id",
                workspace_id, wrapped, self.kek.ref))
        self._keys[key_id] = AESGCM(data_key)
        self._active[workspace_id] = (time.monotonic(), key_id)
        return key_id

    async def workspaces(self, conn: Conn, session_ids: set[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
        """{session: its workspace} for `session_ids`, remembered (one query for the unknown ones)."""
        missing = [sid for sid in session_ids if sid not in self._workspaces]
        if missing:
            for row in await conn.fetch(
                    "SELECT session_id, workspace_id FROM sessions WHERE session_id = ANY($1::uuid[])", missing):
                self._workspaces[row["session_id"]] = row["workspace_id"]
            while len(self._workspaces) > _MAX_SESSIONS:
                self._workspaces.popitem(last=False)
        return {sid: self._workspaces[sid] for sid in session_ids if sid in self._workspaces}

    def forget_active(self, workspace_id: uuid.UUID) -> None:
        self._active.pop(workspace_id, None)


class _transaction:
    """A transaction on a pool (a connection of it) or on a connection (a savepoint inside one)."""

    def __init__(self, conn: Conn):
        self._conn = conn
        self._acquired: Any = None
        self._tx: Any = None

    async def __aenter__(self) -> asyncpg.Connection:
        conn = self._conn
        if isinstance(conn, asyncpg.Pool):
            self._acquired = conn.acquire()
            conn = await self._acquired.__aenter__()
        self._tx = conn.transaction()
        await self._tx.__aenter__()
        return conn

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await self._tx.__aexit__(*exc)
        finally:
            if self._acquired is not None:
                await self._acquired.__aexit__(*exc)


_installed: Keyring | None = None


def install(settings: EncryptionSettings) -> Keyring | None:
    """This process's keyring for `settings` (made once; the same settings again keep it and
    its unwrapped keys); None when no KEK is configured."""
    global _installed
    if _installed is not None and _installed.settings == settings:
        return _installed
    kek = kek_from_settings(settings)
    _installed = None if kek is None else Keyring(settings, kek)
    return _installed


def current() -> Keyring | None:
    return _installed
