"""SQL of accounts, memberships, refresh tokens and invitations (migration 0010).

Only hashes are stored: argon2id for passwords, SHA-256 for refresh and invitation tokens
(random 256-bit values, so a fast hash is enough: nothing to brute-force offline)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import asyncpg

from actors.errors import Conflict

__all__ = ["add_membership", "account_by_email", "account_by_id", "create_account", "insert_invitation",
           "insert_refresh", "list_accounts", "membership_of", "revoke_account_refresh", "revoke_family",
           "set_password", "set_password_hash_only", "take_invitation", "token_state", "take_refresh", "accept_invitation", "mark_refresh_used"]

Conn = asyncpg.Pool | asyncpg.Connection


async def create_account(conn: Conn, email: str, password_hash: str, display_name: str = "") -> uuid.UUID:
    account_id = uuid.uuid4()
    try:
        await conn.execute(
            "INSERT INTO accounts (account_id, email, password_hash, display_name) VALUES ($1, $2, $3, $4)",
            account_id, email, password_hash, display_name,
        )
    except asyncpg.UniqueViolationError:
        raise Conflict("an account with this email exists", code="account_exists") from None
    return account_id


async def add_membership(conn: Conn, account_id: uuid.UUID, org_id: uuid.UUID, workspace_id: uuid.UUID,
                         role: str) -> str | None:
    """Add the account to the workspace, or change its role there; returns the role it had
    there before (None: it was not a member), for the audit trail."""
    # Two statements (callers hold a transaction): a CTE reading the row would be evaluated
    # after the upsert changed it, and its FOR UPDATE would then skip the row.
    before = await conn.fetchval("SELECT role FROM memberships WHERE account_id = $1 AND workspace_id = $2"
                                 " FOR UPDATE", account_id, workspace_id)
    await conn.execute(
        "INSERT INTO memberships (account_id, org_id, workspace_id, role) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (account_id, workspace_id) DO UPDATE SET role = EXCLUDED.role",
        account_id, org_id, workspace_id, role,
    )
    return before


async def account_by_email(conn: Conn, email: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT account_id, email, password_hash, disabled_at FROM accounts WHERE lower(email) = $1", email
    )


async def account_by_id(conn: Conn, account_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT account_id, email, password_hash, disabled_at, display_name,"
        " extract(epoch FROM tokens_valid_after)::float8 AS valid_after FROM accounts WHERE account_id = $1",
        account_id,
    )


async def membership_of(conn: Conn, account_id: uuid.UUID, workspace_id: uuid.UUID | None) -> asyncpg.Record | None:
    """The account's membership in `workspace_id`, or its oldest one when None."""
    return await conn.fetchrow(
        "SELECT org_id, workspace_id, role FROM memberships WHERE account_id = $1"
        " AND ($2::uuid IS NULL OR workspace_id = $2) ORDER BY created_at, workspace_id LIMIT 1",
        account_id, workspace_id,
    )


async def list_accounts(conn: Conn, org_id: uuid.UUID | None = None) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT a.account_id, a.email, a.display_name, a.created_at, a.disabled_at,"
        " coalesce(jsonb_agg(jsonb_build_object('org_id', m.org_id, 'workspace_id', m.workspace_id,"
        " 'role', m.role) ORDER BY m.created_at) FILTER (WHERE m.account_id IS NOT NULL), '[]') AS memberships"
        " FROM accounts a LEFT JOIN memberships m USING (account_id)"
        " WHERE $1::uuid IS NULL OR m.org_id = $1 GROUP BY a.account_id ORDER BY a.created_at",
        org_id,
    )
    return [dict(r) for r in rows]


async def set_password(conn: Conn, account_id: uuid.UUID, password_hash: str) -> None:
    """A new hash; access tokens issued before now stop working (tokens_valid_after)."""
    await conn.execute(
        "UPDATE accounts SET password_hash = $2, password_changed_at = now(),"
        " tokens_valid_after = clock_timestamp() WHERE account_id = $1",
        account_id, password_hash,
    )


async def set_password_hash_only(conn: Conn, account_id: uuid.UUID, password_hash: str) -> None:
    """The same password under new argon2 parameters: nothing is revoked."""
    await conn.execute("UPDATE accounts SET password_hash = $2 WHERE account_id = $1", account_id, password_hash)


async def token_state(conn: Conn, account_id: uuid.UUID, workspace_id: uuid.UUID) -> asyncpg.Record | None:
    """What an access token's check needs: the account's cut-off, whether it is disabled, and
    its role in the token's workspace now (None: no longer a member)."""
    return await conn.fetchrow(
        "SELECT extract(epoch FROM a.tokens_valid_after)::float8 AS valid_after, a.disabled_at, m.role"
        " FROM accounts a LEFT JOIN memberships m ON m.account_id = a.account_id AND m.workspace_id = $2"
        " WHERE a.account_id = $1",
        account_id, workspace_id,
    )


# ----------------------------------------------------------------------------- refresh tokens

async def insert_refresh(conn: Conn, token_hash: bytes, family_id: uuid.UUID, account_id: uuid.UUID,
                         workspace_id: uuid.UUID, ttl: timedelta) -> None:
    await conn.execute(
        "INSERT INTO refresh_tokens (token_hash, family_id, account_id, workspace_id, expires_at)"
        " VALUES ($1, $2, $3, $4, now() + $5::interval)",
        token_hash, family_id, account_id, workspace_id, ttl,
    )


async def take_refresh(conn: asyncpg.Connection, token_hash: bytes) -> asyncpg.Record | None:
    """The token's row, locked for this transaction, with whether it has expired."""
    return await conn.fetchrow(
        "SELECT family_id, account_id, workspace_id, used_at, revoked_at, (expires_at <= now()) AS expired"
        " FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE",
        token_hash,
    )


async def mark_refresh_used(conn: Conn, token_hash: bytes) -> None:
    await conn.execute("UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1", token_hash)


async def revoke_family(conn: Conn, family_id: uuid.UUID) -> int:
    status = await conn.execute(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL", family_id
    )
    return int(status.split()[-1])


async def revoke_account_refresh(conn: Conn, account_id: uuid.UUID) -> int:
    status = await conn.execute(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE account_id = $1 AND revoked_at IS NULL", account_id
    )
    return int(status.split()[-1])


# ----------------------------------------------------------------------------- invitations

async def insert_invitation(conn: Conn, token_hash: bytes, email: str, org_id: uuid.UUID,
                            workspace_id: uuid.UUID, role: str, invited_by: str, ttl: timedelta) -> asyncpg.Record:
    return await conn.fetchrow(
        "INSERT INTO invitations (invitation_id, token_hash, email, org_id, workspace_id, role, invited_by,"
        " expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, now() + $8::interval)"
        " RETURNING invitation_id, email, org_id, workspace_id, role, created_at, expires_at",
        uuid.uuid4(), token_hash, email, org_id, workspace_id, role, invited_by, ttl,
    )


async def take_invitation(conn: asyncpg.Connection, token_hash: bytes) -> asyncpg.Record | None:
    """An open invitation (not accepted, not expired), locked for this transaction."""
    return await conn.fetchrow(
        "SELECT invitation_id, email, org_id, workspace_id, role, invited_by FROM invitations"
        " WHERE token_hash = $1 AND accepted_at IS NULL AND expires_at > now() FOR UPDATE",
        token_hash,
    )


async def accept_invitation(conn: Conn, invitation_id: uuid.UUID, account_id: uuid.UUID) -> None:
    await conn.execute("UPDATE invitations SET accepted_at = now(), account_id = $2 WHERE invitation_id = $1",
                       invitation_id, account_id)
