"""API keys: generation, peppered storage, constant-time verification, scopes, expiry, rotation.

A key reads `tm_<lookup id>_<secret>`: the lookup id is 16 random hex characters drawn apart
from the secret (it finds the row and may be printed), the secret 43 url-safe characters
(256 bits). A row stores the lookup id and HMAC-SHA256(pepper, key) only. The pepper is a
server-side secret setting (`auth.pepper`), never stored in the database, so a dump of the
table alone gives nothing to test guesses against — and without the pepper not even a weak key
could be brute-forced from it. Keys chosen by an operator (the bootstrap key) must have the same
form and pass `check_key_strength` (at least 128 bits by a conservative estimate).

A key may expire (`expires_at`); rotating one makes a replacement with the same organisation,
workspace, role, recorder and name, and lets the old key work until the end of an overlap window.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import string
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import asyncpg

from actors.errors import ConfigError, Conflict, InvalidInput, NotFound, Unauthenticated
# Who calls and the default tenancy live with the roles (actors/permissions.py); callers still
# import them from here too, as they did before they moved.
from actors.permissions import (ALL_SCOPES, DEFAULT_ORG_ID, DEFAULT_WORKSPACE_ID, Principal, Scope, check_role,
                                role_for_scopes)
from configs.settings import AuthSettings

__all__ = [
    "DEFAULT_ORG_ID",
    "DEFAULT_WORKSPACE_ID",
    "Scope",
    "ALL_SCOPES",
    "Principal",
    "KeyInfo",
    "generate_key",
    "parse_key",
    "check_key_strength",
    "pepper_of",
    "hash_key",
    "key_prefix",
    "create_key",
    "register_key",
    "list_keys",
    "revoke_key",
    "revoke_key_by_name",
    "rotate_key",
    "Rotation",
    "authenticate",
    "KeyCache",
]

KEY_TAG = "tm_"
LOOKUP_HEX_CHARS = 16
SECRET_ALPHABET = frozenset(string.ascii_letters + string.digits + "-_")
MIN_SECRET_CHARS = 22  # 22 url-safe characters carry 132 bits when drawn at random
MIN_SECRET_BITS = 128
MAX_KEY_CHARS = 256
_LOOKUP_RE = re.compile(rf"[0-9a-f]{{{LOOKUP_HEX_CHARS}}}")
KEY_FORM = f"{KEY_TAG}<{LOOKUP_HEX_CHARS} hex chars>_<at least {MIN_SECRET_CHARS} random url-safe chars>"


@dataclass(frozen=True)
class KeyInfo:
    key_id: uuid.UUID
    org_id: uuid.UUID
    name: str
    lookup_id: str | None  # None: a key of the old format, invalidated by migration 0006
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None
    expires_at: datetime | None
    replaced_by: uuid.UUID | None
    workspace_id: uuid.UUID = DEFAULT_WORKSPACE_ID
    role: str = "recorder"
    recorder_id: uuid.UUID | None = None

    @property
    def display_id(self) -> str:
        return f"{KEY_TAG}{self.lookup_id}" if self.lookup_id else "(old format)"

    def state(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        if self.replaced_by is not None:
            return "rotating"
        return "active"


@dataclass(frozen=True)
class ParsedKey:
    lookup_id: str
    secret: str


def generate_key() -> str:
    return f"{KEY_TAG}{secrets.token_hex(LOOKUP_HEX_CHARS // 2)}_{secrets.token_urlsafe(32)}"


def parse_key(text: str) -> ParsedKey | None:
    """The parts of a well-formed key, or None (anything else is unknown without a query)."""
    if len(text) > MAX_KEY_CHARS or not text.startswith(KEY_TAG):
        return None
    lookup, sep, secret = text[len(KEY_TAG):].partition("_")
    if not sep or not _LOOKUP_RE.fullmatch(lookup) or len(secret) < MIN_SECRET_CHARS:
        return None
    if not SECRET_ALPHABET.issuperset(secret):
        return None
    return ParsedKey(lookup, secret)


def _estimated_bits(secret: str) -> float:
    """A conservative entropy estimate: length × log2(alphabet), lowered when characters repeat
    more than random text would make them. Random url-safe text uses at least three of the four
    character classes (a 22-character one misses two with odds below 1e-5), so it is credited
    with the whole alphabet; text of one class of letters or digits (words, "aaaa…") gets none."""
    classes = [string.ascii_lowercase, string.ascii_uppercase, string.digits, "-_"]
    used = [c for c in classes if any(ch in c for ch in secret)]
    if len([c for c in used if c != "-_"]) < 2:  # words, with or without separators
        return 0.0
    alphabet = len(SECRET_ALPHABET) if len(used) >= 3 else sum(len(c) for c in used)
    effective_len = min(len(secret), 3 * len(set(secret)))  # "abab…" counts for little
    return effective_len * math.log2(alphabet)


def check_key_strength(key: str, what: str = "an API key") -> ParsedKey:
    """Refuse a key that is malformed or evidently not random (an operator's bootstrap key)."""
    parsed = parse_key(key)
    if parsed is None:
        raise InvalidInput(f"{what} must look like {KEY_FORM}; `tracemill keys generate` prints one")
    bits = _estimated_bits(parsed.secret)
    if bits < MIN_SECRET_BITS:
        raise InvalidInput(
            f"{what} is too weak: its secret part carries about {bits:.0f} bits, at least "
            f"{MIN_SECRET_BITS} are required (random url-safe characters, e.g. "
            "`tracemill keys generate`)"
        )
    return parsed


def pepper_of(settings: AuthSettings) -> bytes:
    """The server-side secret keys are hashed with; refusing to run without one."""
    if settings.pepper is None:
        raise ConfigError(
            "auth.pepper is not set: give TRACEMILL_KEY_PEPPER or TRACEMILL_KEY_PEPPER_FILE "
            "(at least 32 random characters; `tracemill up` makes one in its state directory)"
        )
    return settings.pepper.get_secret_value().encode("utf-8")


def hash_key(key: str, pepper: bytes) -> bytes:
    # A keyed hash: without the pepper, stored digests cannot be checked against guesses.
    return hmac.new(pepper, key.encode("utf-8"), hashlib.sha256).digest()


def key_prefix(key: str) -> str:
    """What may be printed of a key: its tag and lookup id, never any of the secret."""
    parsed = parse_key(key)
    return f"{KEY_TAG}{parsed.lookup_id}" if parsed else ""


def _check_scopes(scopes: list[str]) -> list[str]:
    unknown = sorted(set(scopes) - set(ALL_SCOPES))
    if unknown or not scopes:
        raise InvalidInput(f"scopes must be a non-empty subset of {list(ALL_SCOPES)}; got {scopes}")
    return sorted(set(scopes))


def _check_expiry(expires_in: timedelta | None) -> timedelta | None:
    if expires_in is not None and expires_in <= timedelta(0):
        raise InvalidInput("an expiry must lie in the future")
    return expires_in


async def register_key(
    pool: asyncpg.Pool | asyncpg.Connection,
    key: str,
    *,
    scopes: list[str] | None = None,
    pepper: bytes,
    org_id: uuid.UUID = DEFAULT_ORG_ID,
    name: str = "",
    expires_in: timedelta | None = None,
    role: str | None = None,
    workspace_id: uuid.UUID | None = None,
    recorder_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Store a key (its lookup id and HMAC). Registering the same key again is a no-op
    returning the same id; another key with a lookup id already taken is refused.
    The key gets `role` (or the role its old `scopes` map to) in `workspace_id` (default: the
    organisation's default workspace); `recorder_id` names who records with it."""
    parsed = check_key_strength(key)
    if role is None:
        role = role_for_scopes(_check_scopes(scopes or []))
    role = check_role(role)
    scopes = [] if scopes is None else _check_scopes(scopes)  # a key made with a role has no old scopes
    digest = hash_key(key, pepper)
    row = await pool.fetchrow(
        "INSERT INTO api_keys (key_id, org_id, name, lookup_id, key_hmac, scopes, expires_at, role,"
        " workspace_id, recorder_id)"
        " VALUES ($1, $2, $3, $4, $5, $6, now() + $7::interval, $8, $9, $10)"  # the database's clock, as checks use
        " ON CONFLICT (lookup_id) DO NOTHING RETURNING key_id",
        uuid.uuid4(), org_id, name, parsed.lookup_id, digest, scopes, _check_expiry(expires_in), role,
        workspace_id, recorder_id,
    )
    if row is not None:
        return row["key_id"]
    existing = await pool.fetchrow(
        "SELECT key_id, key_hmac FROM api_keys WHERE lookup_id = $1", parsed.lookup_id
    )
    if existing is None or not hmac.compare_digest(bytes(existing["key_hmac"]), digest):
        raise Conflict(f"the lookup id of {key_prefix(key)} belongs to another key", code="key_id_taken")
    return existing["key_id"]


async def create_key(
    pool: asyncpg.Pool | asyncpg.Connection,
    *,
    scopes: list[str] | None = None,
    pepper: bytes,
    org_id: uuid.UUID = DEFAULT_ORG_ID,
    name: str = "",
    expires_in: timedelta | None = None,
    role: str | None = None,
    workspace_id: uuid.UUID | None = None,
    recorder_id: uuid.UUID | None = None,
) -> tuple[uuid.UUID, str]:
    """Make a new key; the plain text is returned once and never stored."""
    key = generate_key()
    key_id = await register_key(pool, key, scopes=scopes, pepper=pepper, org_id=org_id, name=name,
                                expires_in=expires_in, role=role, workspace_id=workspace_id,
                                recorder_id=recorder_id)
    return key_id, key


async def list_keys(pool: asyncpg.Pool, *, workspace_id: uuid.UUID | None = None) -> list[KeyInfo]:
    """Every key, or one workspace's."""
    rows = await pool.fetch(
        "SELECT key_id, org_id, name, lookup_id, scopes, created_at, revoked_at, expires_at, replaced_by,"
        " workspace_id, role, recorder_id FROM api_keys WHERE $1::uuid IS NULL OR workspace_id = $1"
        " ORDER BY created_at", workspace_id,
    )
    return [KeyInfo(**dict(r)) for r in rows]


async def _resolve(conn: asyncpg.Pool | asyncpg.Connection, key_ref: str) -> uuid.UUID:
    """A key id, or the printed `tm_<lookup id>`, to the row's key id."""
    try:
        return uuid.UUID(key_ref)
    except ValueError:
        pass
    lookup = key_ref.removeprefix(KEY_TAG)
    key_id = await conn.fetchval("SELECT key_id FROM api_keys WHERE lookup_id = $1", lookup)
    if key_id is None:
        raise NotFound(f"no API key matches {key_ref!r}")
    return key_id


async def revoke_key(pool: asyncpg.Pool, key_ref: str) -> uuid.UUID:
    """Revoke by key id or by the printed `tm_<lookup id>`."""
    key_id = await _resolve(pool, key_ref)
    status = await pool.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE key_id = $1 AND revoked_at IS NULL", key_id
    )
    if status.split()[-1] == "0":
        raise NotFound(f"no active API key matches {key_ref!r}")
    return key_id


async def revoke_key_by_name(pool: asyncpg.Pool, name: str) -> int:
    """Revoke every active key with this name; returns how many."""
    status = await pool.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL", name
    )
    return int(status.split()[-1])


@dataclass(frozen=True)
class Rotation:
    old_key_id: uuid.UUID
    old_expires_at: datetime
    new_key_id: uuid.UUID
    new_key: str


async def rotate_key(
    pool: asyncpg.Pool, key_ref: str, *, overlap: timedelta, pepper: bytes,
    expires_in: timedelta | None = None,
) -> Rotation:
    """A new key with the old one's organisation, scopes and name; the old key keeps working
    for `overlap` (never longer than it would have anyway), so clients can switch over.
    The new key gets `expires_in`, else the old key's lifetime if it had one."""
    if overlap < timedelta(0):
        raise InvalidInput("the overlap cannot be negative")
    async with pool.acquire() as conn, conn.transaction():
        key_id = await _resolve(conn, key_ref)
        old = await conn.fetchrow(
            "SELECT org_id, name, scopes, created_at, expires_at, replaced_by, lookup_id, role, workspace_id,"
            " recorder_id,"
            " (expires_at IS NOT NULL AND expires_at <= now()) AS expired"
            " FROM api_keys WHERE key_id = $1 AND revoked_at IS NULL FOR UPDATE",
            key_id,
        )
        if old is None or old["expired"] or old["lookup_id"] is None:
            raise NotFound(f"no active API key matches {key_ref!r}")
        if old["replaced_by"] is not None:
            raise Conflict(f"{key_ref} was already rotated (to {old['replaced_by']}); rotate that key",
                           code="key_already_rotated")
        if expires_in is None and old["expires_at"] is not None:
            expires_in = old["expires_at"] - old["created_at"]
        new_id, new_key = await create_key(conn, scopes=list(old["scopes"]), pepper=pepper,
                                           org_id=old["org_id"], name=old["name"], expires_in=expires_in,
                                           role=old["role"], workspace_id=old["workspace_id"],
                                           recorder_id=old["recorder_id"])
        old_expires = await conn.fetchval(
            "UPDATE api_keys SET replaced_by = $2,"
            " expires_at = LEAST(coalesce(expires_at, 'infinity'), now() + $3::interval)"
            " WHERE key_id = $1 RETURNING expires_at",
            key_id, new_id, overlap,
        )
    return Rotation(key_id, old_expires, new_id, new_key)


def _plausible(presented: str) -> bool:
    """Keys are printable ASCII. Anything else (a NUL, a lone surrogate from a WebSocket auth
    frame) is unknown without a query: it could not be hashed or bound to one anyway."""
    return presented.isascii() and presented.isprintable()


_NO_DIGEST = bytes(32)


async def authenticate(pool: asyncpg.Pool, presented: str | None, pepper: bytes) -> Principal:
    if not presented:
        raise Unauthenticated("an API key is required: send 'Authorization: Bearer <key>'")
    parsed = parse_key(presented) if _plausible(presented) else None
    if parsed is None:  # malformed, or the old format (invalidated): no query
        raise Unauthenticated("unknown API key")
    row = await pool.fetchrow(
        "SELECT key_id, org_id, key_hmac, scopes, revoked_at, expires_at, role, workspace_id, recorder_id,"
        " (expires_at IS NOT NULL AND expires_at <= now()) AS expired"
        " FROM api_keys WHERE lookup_id = $1",
        parsed.lookup_id,
    )
    stored = bytes(row["key_hmac"]) if row is not None else _NO_DIGEST
    # Constant-time comparison, done even when no row matched, so timing reveals nothing.
    if not hmac.compare_digest(stored, hash_key(presented, pepper)) or row is None:
        raise Unauthenticated("unknown API key")
    # Only the holder of the whole key learns why it no longer works.
    if row["revoked_at"] is not None:
        raise Unauthenticated("this API key was revoked")
    if row["expired"]:
        raise Unauthenticated("this API key has expired; use its replacement or ask for a new one")
    return Principal(org_id=row["org_id"], key_id=row["key_id"], scopes=frozenset(row["scopes"]),
                     expires_at=row["expires_at"], workspace_id=row["workspace_id"], role=row["role"],
                     recorder_id=row["recorder_id"])


@dataclass
class KeyCache:
    """Remembers verified keys (by HMAC) for a short time, so each request is not a query.

    A revoked key therefore keeps working for at most `ttl_s` seconds in each ingress replica;
    an expiring key is remembered no longer than until it expires.
    """

    ttl_s: float
    pepper: bytes = field(repr=False)
    max_entries: int = 10_000
    _entries: dict[bytes, tuple[float, Principal]] = field(default_factory=dict, repr=False)

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> KeyCache:
        return cls(ttl_s=settings.cache_ttl_s, pepper=pepper_of(settings))

    def cached(self, presented: str | None) -> Principal | None:
        """The principal of a key verified within `ttl_s`, without a query; else None. The
        rate guard (serve_app.rate_limits) lets such keys through an address's backoff."""
        if not presented or self.ttl_s <= 0 or not _plausible(presented):
            return None
        hit = self._entries.get(hash_key(presented, self.pepper))
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    async def authenticate(self, pool: asyncpg.Pool, presented: str | None) -> Principal:
        if not presented or self.ttl_s <= 0 or not _plausible(presented):
            return await authenticate(pool, presented, self.pepper)
        digest = hash_key(presented, self.pepper)
        now = time.monotonic()
        hit = self._entries.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        principal = await authenticate(pool, presented, self.pepper)
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        until = now + self.ttl_s
        if principal.expires_at is not None:
            left = (principal.expires_at - datetime.now(timezone.utc)).total_seconds()
            until = min(until, now + max(left, 0.0))
        self._entries[digest] = (until, principal)
        return principal
