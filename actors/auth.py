"""API keys: generation, hashed storage, constant-time verification, scopes.

A key looks like `tm_<43 url-safe chars>`. Only its first 12 characters (the lookup prefix)
and its SHA-256 are stored: keys carry 256 bits of entropy, so a fast hash is enough, and a
leaked table yields nothing usable. Bootstrap keys chosen by an operator may have any form of
at least 16 characters; they are stored the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import asyncpg

from actors.errors import Forbidden, InvalidInput, NotFound, Unauthenticated

__all__ = [
    "DEFAULT_ORG_ID",
    "Scope",
    "ALL_SCOPES",
    "Principal",
    "KeyInfo",
    "generate_key",
    "hash_key",
    "key_prefix",
    "create_key",
    "register_key",
    "list_keys",
    "revoke_key",
    "revoke_key_by_name",
    "authenticate",
    "KeyCache",
]

DEFAULT_ORG_ID = uuid.UUID("00000000-0000-0000-0000-000000000001")
Scope = Literal["ingest", "read", "admin"]
ALL_SCOPES: tuple[Scope, ...] = ("ingest", "read", "admin")
PREFIX_CHARS = 12
MIN_KEY_CHARS = 16
MAX_KEY_CHARS = 256


@dataclass(frozen=True)
class Principal:
    """Who is calling: the organisation and the scopes of the key it presented."""

    org_id: uuid.UUID
    key_id: uuid.UUID
    scopes: frozenset[str]

    def require(self, scope: Scope) -> None:
        # admin is a superset: an operator's key can do what any client's key can.
        if scope not in self.scopes and "admin" not in self.scopes:
            raise Forbidden(f"this API key lacks the '{scope}' scope")


@dataclass(frozen=True)
class KeyInfo:
    key_id: uuid.UUID
    org_id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None


def generate_key() -> str:
    return "tm_" + secrets.token_urlsafe(32)


def key_prefix(key: str) -> str:
    return key[:PREFIX_CHARS]


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def _check_key_text(key: str) -> None:
    if not (MIN_KEY_CHARS <= len(key) <= MAX_KEY_CHARS) or not key.isprintable() or " " in key:
        raise InvalidInput(
            f"an API key must be {MIN_KEY_CHARS}-{MAX_KEY_CHARS} printable characters without spaces"
        )


def _check_scopes(scopes: list[str]) -> list[str]:
    unknown = sorted(set(scopes) - set(ALL_SCOPES))
    if unknown or not scopes:
        raise InvalidInput(f"scopes must be a non-empty subset of {list(ALL_SCOPES)}; got {scopes}")
    return sorted(set(scopes))


async def register_key(
    pool: asyncpg.Pool,
    key: str,
    *,
    scopes: list[str],
    org_id: uuid.UUID = DEFAULT_ORG_ID,
    name: str = "",
) -> uuid.UUID:
    """Store a key (hashed). Registering the same key again is a no-op returning the same id."""
    _check_key_text(key)
    scopes = _check_scopes(scopes)
    digest = hash_key(key)
    row = await pool.fetchrow(
        "INSERT INTO api_keys (key_id, org_id, name, prefix, key_hash, scopes)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (key_hash) DO NOTHING RETURNING key_id",
        uuid.uuid4(), org_id, name, key_prefix(key), digest, scopes,
    )
    if row is not None:
        return row["key_id"]
    return await pool.fetchval("SELECT key_id FROM api_keys WHERE key_hash = $1", digest)


async def create_key(
    pool: asyncpg.Pool, *, scopes: list[str], org_id: uuid.UUID = DEFAULT_ORG_ID, name: str = ""
) -> tuple[uuid.UUID, str]:
    """Make a new key; the plain text is returned once and never stored."""
    key = generate_key()
    return await register_key(pool, key, scopes=scopes, org_id=org_id, name=name), key


async def list_keys(pool: asyncpg.Pool) -> list[KeyInfo]:
    rows = await pool.fetch(
        "SELECT key_id, org_id, name, prefix, scopes, created_at, revoked_at"
        " FROM api_keys ORDER BY created_at"
    )
    return [KeyInfo(**dict(r)) for r in rows]


async def revoke_key(pool: asyncpg.Pool, key_id_or_prefix: str) -> uuid.UUID:
    """Revoke by key id or by the printed prefix; an ambiguous prefix is refused."""
    try:
        where, arg = "key_id = $1", uuid.UUID(key_id_or_prefix)
    except ValueError:
        where, arg = "prefix = $1", key_id_or_prefix
    rows = await pool.fetch(f"SELECT key_id FROM api_keys WHERE {where} AND revoked_at IS NULL", arg)
    if not rows:
        raise NotFound(f"no active API key matches {key_id_or_prefix!r}")
    if len(rows) > 1:
        raise InvalidInput(f"{key_id_or_prefix!r} matches {len(rows)} keys; use the key id")
    key_id = rows[0]["key_id"]
    await pool.execute("UPDATE api_keys SET revoked_at = now() WHERE key_id = $1", key_id)
    return key_id


async def revoke_key_by_name(pool: asyncpg.Pool, name: str) -> int:
    """Revoke every active key with this name; returns how many."""
    status = await pool.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL", name
    )
    return int(status.split()[-1])


def _plausible(presented: str) -> bool:
    """Keys are printable ASCII. Anything else (a NUL, a lone surrogate from a WebSocket auth
    frame) is unknown without a query: it could not be hashed or bound to one anyway."""
    return presented.isascii() and presented.isprintable()


async def authenticate(pool: asyncpg.Pool, presented: str | None) -> Principal:
    if not presented:
        raise Unauthenticated("an API key is required: send 'Authorization: Bearer <key>'")
    if len(presented) > MAX_KEY_CHARS or not _plausible(presented):
        raise Unauthenticated("unknown API key")
    digest = hash_key(presented)
    rows = await pool.fetch(
        "SELECT key_id, org_id, key_hash, scopes FROM api_keys"
        " WHERE prefix = $1 AND revoked_at IS NULL",
        key_prefix(presented),
    )
    match = None
    for row in rows:
        # Constant-time comparison of every candidate, so timing reveals nothing.
        if hmac.compare_digest(bytes(row["key_hash"]), digest):
            match = row
    if match is None:
        raise Unauthenticated("unknown API key")
    return Principal(org_id=match["org_id"], key_id=match["key_id"], scopes=frozenset(match["scopes"]))


@dataclass
class KeyCache:
    """Remembers verified keys (by hash) for a short time, so each request is not a query.

    A revoked key therefore keeps working for at most `ttl_s` seconds in each ingress replica.
    """

    ttl_s: float
    max_entries: int = 10_000
    _entries: dict[bytes, tuple[float, Principal]] = field(default_factory=dict)

    async def authenticate(self, pool: asyncpg.Pool, presented: str | None) -> Principal:
        if not presented or self.ttl_s <= 0 or not _plausible(presented):
            return await authenticate(pool, presented)
        digest = hash_key(presented)
        now = time.monotonic()
        hit = self._entries.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        principal = await authenticate(pool, presented)
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[digest] = (now + self.ttl_s, principal)
        return principal
