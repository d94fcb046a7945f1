"""Sign-in, refresh, sign-out, password change and invitations: what a person does with an account.

- Sign-in answers the same `401 invalid_credentials` for an unknown email, a wrong password and
  a disabled account, after the same argon2 work (a dummy hash when no account matches).
- At most `signin_failures` failures per address and per account in `signin_window_s` (the
  seeds: 5 per 15 minutes); beyond, `429` until the oldest counted failure leaves the window.
  Failures are audit entries (`signin.failure`), so the count holds across ingress replicas;
  the account is named by a keyed hash of the email, so unknown emails are not stored.
- Refresh tokens are random (256 bits), stored as SHA-256, and single-use: each refresh marks
  its token used and issues a successor in the same family. A used token presented again is a
  replay (one of its two holders is not the owner): the whole family is revoked, `token.reuse`
  is audited, and the caller gets 401.
- Sign-out revokes the family; a password change revokes every family of the account and the
  access tokens issued before it (tokens_valid_after, checked by AccountTokens).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg

from actors.accounts.audit import Actor, audit, inet_or_none
from actors.accounts.passwords import Passwords, check_password_rules
from actors.accounts.tokens import ROLE_SCOPES, AccessClaims, TokenSigner
from actors.errors import InvalidInput, NotFound, RateLimited, Unauthenticated
from actors.storage import accounts_repo, audit_repo
from configs.accounts import AccountSettings

__all__ = ["Accounts", "SignedIn", "normalise_email"]

REFRESH_TAG = "rt_"
INVITE_TAG = "inv_"
MAX_EMAIL_CHARS = 254
_INVALID = "wrong email or password"


def normalise_email(raw: str) -> str:
    email = raw.strip().lower()
    local, at, domain = email.partition("@")
    if not at or not local or "." not in domain or len(email) > MAX_EMAIL_CHARS or any(c.isspace() for c in email):
        raise InvalidInput("invalid email", [{"field": "body.email", "error": "must look like name@example.org"}])
    return email


def _token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


@dataclass(frozen=True)
class SignedIn:
    access_token: str
    expires_in: int
    refresh_token: str
    account_id: uuid.UUID
    org_id: uuid.UUID
    workspace_id: uuid.UUID
    role: str

    def body(self) -> dict[str, Any]:
        """What the API answers (the refresh token goes into a cookie, not the body)."""
        return {"access_token": self.access_token, "token_type": "Bearer", "expires_in": self.expires_in,
                "account_id": str(self.account_id), "org_id": str(self.org_id),
                "workspace_id": str(self.workspace_id), "role": self.role}


class Accounts:
    """One process's account operations: the hasher, the signer and the settings."""

    def __init__(self, settings: AccountSettings, signer: TokenSigner, passwords: Passwords | None = None):
        self.settings = settings
        self.signer = signer
        self.passwords = passwords or Passwords(settings.argon2)
        # Attempts on one account wait for each other in this process: the failure count is read
        # before the hash and written after it, so concurrent guesses would otherwise all pass
        # the check (32 in flight: 32 guesses, not 5). Across R replicas, at most R-1 more.
        self._attempts: dict[str, asyncio.Lock] = {}

    def subject_of(self, email: str) -> str:
        # Keyed, so the audit log names accounts by an opaque value, unknown emails included.
        return hmac.new(self.signer.audit_key, email.encode("utf-8"), hashlib.sha256).hexdigest()[:32]

    # ------------------------------------------------------------------ accounts

    async def create_account(self, pool: asyncpg.Pool, email: str, password: str, *, org_id: uuid.UUID,
                             workspace_id: uuid.UUID, role: str, actor: Actor, display_name: str = "",
                             address: str | None = None) -> uuid.UUID:
        email = normalise_email(email)
        _check_role(role)
        check_password_rules(password, self.settings, email)
        hashed = await self.passwords.hash_async(password)
        async with pool.acquire() as conn, conn.transaction():
            account_id = await accounts_repo.create_account(conn, email, hashed, display_name)
            await accounts_repo.add_membership(conn, account_id, org_id, workspace_id, role)
            await audit(conn, "account.create", actor, target=str(account_id), org_id=org_id,
                        workspace_id=workspace_id, address=address, details={"role": role})
            await _audit_role(conn, actor, account_id, org_id, workspace_id, None, role, address)
        return account_id

    # ------------------------------------------------------------------ sign-in

    async def sign_in(self, pool: asyncpg.Pool, email: str, password: str, *, address: str | None,
                      workspace_id: uuid.UUID | None = None) -> SignedIn:
        try:
            email = normalise_email(email)
        except InvalidInput:
            email = email.strip().lower()[:MAX_EMAIL_CHARS]  # still counted, still the same answer
        subject = self.subject_of(email)
        lock = self._attempts.setdefault(subject, asyncio.Lock())
        try:
            async with lock:
                return await self._attempt(pool, email, password, subject, address, workspace_id)
        finally:
            if not lock.locked() and len(self._attempts) > 10_000:
                self._attempts.pop(subject, None)

    async def _attempt(self, pool: asyncpg.Pool, email: str, password: str, subject: str, address: str | None,
                       workspace_id: uuid.UUID | None) -> SignedIn:
        await self._check_lockout(pool, address, subject)
        row = await accounts_repo.account_by_email(pool, email)
        ok = await self.passwords.verify_async(row["password_hash"] if row else None, password)
        member = await accounts_repo.membership_of(pool, row["account_id"], workspace_id) if ok and row else None
        anonymous = Actor("anonymous")
        if not ok or row is None or row["disabled_at"] is not None or member is None:
            known = Actor("account", str(row["account_id"])) if row is not None else anonymous
            org = member["org_id"] if member else None
            await audit(pool, "signin.failure", known, outcome="failure", address=address, subject=subject,
                        org_id=org, details={"reason": _reason(row, ok, member)})
            raise Unauthenticated(_INVALID, code="invalid_credentials")
        if self.passwords.needs_rehash(row["password_hash"]):  # parameters raised since: upgrade
            rehashed = await self.passwords.hash_async(password)
            await accounts_repo.set_password_hash_only(pool, row["account_id"], rehashed)
        signed = await self._issue(pool, row["account_id"], member, uuid.uuid4())
        await audit(pool, "signin.success", Actor("account", str(row["account_id"]), member["org_id"],
                                                   member["workspace_id"]), address=address, subject=subject,
                    details={"role": member["role"]})
        return signed

    async def _check_lockout(self, pool: asyncpg.Pool, address: str | None, subject: str) -> None:
        s = self.settings
        counts = await _failures(pool, inet_or_none(address), subject, s.signin_window_s)
        locked = [(counts["oldest_address"], "address")] if counts["by_address"] >= s.signin_failures else []
        if counts["by_subject"] >= s.signin_failures:
            locked.append((counts["oldest_subject"], "account"))
        if not locked:
            return
        oldest, what = max(locked, key=lambda item: item[0])
        wait = (oldest + timedelta(seconds=s.signin_window_s) - counts["now"]).total_seconds()
        await audit(pool, "signin.failure", Actor("anonymous"), outcome="refused", address=address,
                    subject=subject, details={"reason": f"too many failures for this {what}"})
        raise RateLimited(
            f"too many failed sign-ins; retry after {max(1, int(wait) + 1)} s", max(1.0, float(int(wait) + 1)),
            [{"policy": "signin-failures", "quota": s.signin_failures, "window_s": s.signin_window_s,
              "remaining": 0, "unit": None}],
        )

    async def _issue(self, conn: asyncpg.Pool | asyncpg.Connection, account_id: uuid.UUID, member: Any,
                     family_id: uuid.UUID) -> SignedIn:
        access, ttl = self.signer.issue(account_id, member["org_id"], member["workspace_id"], member["role"])
        refresh = REFRESH_TAG + secrets.token_urlsafe(32)
        await accounts_repo.insert_refresh(conn, _token_hash(refresh), family_id, account_id,
                                           member["workspace_id"], timedelta(seconds=self.settings.refresh_ttl_s))
        return SignedIn(access, ttl, refresh, account_id, member["org_id"], member["workspace_id"], member["role"])

    # ------------------------------------------------------------------ refresh, sign-out

    async def refresh(self, pool: asyncpg.Pool, refresh_token: str | None, *, address: str | None) -> SignedIn:
        if not refresh_token or not refresh_token.startswith(REFRESH_TAG) or len(refresh_token) > 128:
            raise Unauthenticated("invalid refresh token")
        replayed: Any = None
        async with pool.acquire() as conn, conn.transaction():
            row = await accounts_repo.take_refresh(conn, _token_hash(refresh_token))
            if row is None or row["revoked_at"] is not None or row["expired"]:
                raise Unauthenticated("invalid refresh token; sign in again")
            if row["used_at"] is not None:
                revoked = await accounts_repo.revoke_family(conn, row["family_id"])
                member = await accounts_repo.membership_of(conn, row["account_id"], row["workspace_id"])
                await audit(conn, "token.reuse", Actor("anonymous"), outcome="refused", address=address,
                            target=str(row["account_id"]), org_id=member["org_id"] if member else None,
                            workspace_id=row["workspace_id"],
                            details={"family_id": str(row["family_id"]), "revoked": revoked})
                replayed = row
            else:
                await accounts_repo.mark_refresh_used(conn, _token_hash(refresh_token))
                account = await accounts_repo.account_by_id(conn, row["account_id"])
                member = await accounts_repo.membership_of(conn, row["account_id"], row["workspace_id"])
                if account is None or account["disabled_at"] is not None or member is None:
                    await accounts_repo.revoke_family(conn, row["family_id"])
                    raise Unauthenticated("invalid refresh token; sign in again")
                return await self._issue(conn, row["account_id"], member, row["family_id"])
        assert replayed is not None  # committed the revocation before refusing
        raise Unauthenticated("this refresh token was already used: every session of its sign-in is revoked")

    async def sign_out(self, pool: asyncpg.Pool, refresh_token: str | None, *, address: str | None) -> bool:
        """Revoke the token's family; False when the token is unknown (sign-out is idempotent)."""
        if not refresh_token or not refresh_token.startswith(REFRESH_TAG) or len(refresh_token) > 128:
            return False
        async with pool.acquire() as conn, conn.transaction():
            row = await accounts_repo.take_refresh(conn, _token_hash(refresh_token))
            if row is None:
                return False
            await accounts_repo.revoke_family(conn, row["family_id"])
            member = await accounts_repo.membership_of(conn, row["account_id"], row["workspace_id"])
            await audit(conn, "signout.success", Actor("account", str(row["account_id"])), address=address,
                        org_id=member["org_id"] if member else None, workspace_id=row["workspace_id"])
        return True

    async def change_password(self, pool: asyncpg.Pool, claims: AccessClaims, current: str, new: str, *,
                              address: str | None) -> None:
        account = await accounts_repo.account_by_id(pool, claims.account_id)
        if account is None or not await self.passwords.verify_async(account["password_hash"], current):
            raise Unauthenticated("the current password is wrong", code="invalid_credentials")
        check_password_rules(new, self.settings, account["email"])
        hashed = await self.passwords.hash_async(new)
        async with pool.acquire() as conn, conn.transaction():
            await accounts_repo.set_password(conn, claims.account_id, hashed)
            revoked = await accounts_repo.revoke_account_refresh(conn, claims.account_id)
            await audit(conn, "password.change", Actor("account", str(claims.account_id), claims.org_id,
                                                        claims.workspace_id), address=address,
                        details={"sign_ins_revoked": revoked})

    # ------------------------------------------------------------------ invitations

    async def invite(self, pool: asyncpg.Pool, email: str, role: str, *, org_id: uuid.UUID,
                     workspace_id: uuid.UUID, actor: Actor, address: str | None) -> dict[str, Any]:
        email = normalise_email(email)
        _check_role(role)
        token = INVITE_TAG + secrets.token_urlsafe(32)
        async with pool.acquire() as conn, conn.transaction():
            row = await accounts_repo.insert_invitation(conn, _token_hash(token), email, org_id, workspace_id, role,
                                                        f"{actor.kind}:{actor.actor_id}",
                                                        timedelta(seconds=self.settings.invite_ttl_s))
            await audit(conn, "invitation.create", actor, target=str(row["invitation_id"]), org_id=org_id,
                        workspace_id=workspace_id, address=address, details={"role": role})
        view = {k: (str(v) if isinstance(v, uuid.UUID) else v) for k, v in dict(row).items()}
        return view | {"token": token}

    async def accept(self, pool: asyncpg.Pool, token: str, password: str, *, address: str | None,
                     display_name: str = "") -> SignedIn:
        """Join the invitation's workspace: a new account with `password`, or an existing one
        whose password it is. Then signed in to that workspace."""
        if not token.startswith(INVITE_TAG) or len(token) > 128:
            raise NotFound("no open invitation matches this token")
        async with pool.acquire() as conn, conn.transaction():
            invitation = await accounts_repo.take_invitation(conn, _token_hash(token))
            if invitation is None:
                raise NotFound("no open invitation matches this token (used, expired or unknown)")
            existing = await accounts_repo.account_by_email(conn, invitation["email"])
            if existing is not None:
                if not await self.passwords.verify_async(existing["password_hash"], password):
                    raise Unauthenticated(_INVALID, code="invalid_credentials")
                account_id = existing["account_id"]
            else:
                check_password_rules(password, self.settings, invitation["email"])
                account_id = await accounts_repo.create_account(conn, invitation["email"],
                                                                await self.passwords.hash_async(password), display_name)
            before = await accounts_repo.add_membership(conn, account_id, invitation["org_id"],
                                                        invitation["workspace_id"], invitation["role"])
            await accounts_repo.accept_invitation(conn, invitation["invitation_id"], account_id)
            member = await accounts_repo.membership_of(conn, account_id, invitation["workspace_id"])
            await audit(conn, "invitation.accept", Actor("account", str(account_id)), address=address,
                        target=str(invitation["invitation_id"]), org_id=invitation["org_id"],
                        workspace_id=invitation["workspace_id"], details={"role": invitation["role"]})
            if before != invitation["role"]:  # the inviter gave the role; the invitation names who
                await _audit_role(conn, Actor("account", str(account_id)), account_id, invitation["org_id"],
                                  invitation["workspace_id"], before, invitation["role"], address,
                                  granted_by=invitation["invited_by"])
            return await self._issue(conn, account_id, member, uuid.uuid4())


async def _audit_role(conn: asyncpg.Connection, actor: Actor, account_id: uuid.UUID, org_id: uuid.UUID,
                      workspace_id: uuid.UUID, before: str | None, role: str, address: str | None,
                      granted_by: str | None = None) -> None:
    """A member's role given or changed in a workspace (before: None when newly a member)."""
    details: dict[str, Any] = {"role": role, "previous_role": before}
    if granted_by is not None:
        details["granted_by"] = granted_by
    await audit(conn, "role.change", actor, target=str(account_id), org_id=org_id, workspace_id=workspace_id,
                address=address, details=details)


async def _failures(pool: asyncpg.Pool, address: str | None, subject: str, window_s: int) -> dict[str, Any]:
    counts = await audit_repo.signin_failures(pool, address, subject, window_s)
    now = counts["now"] or datetime.now(timezone.utc)
    return counts | {"now": now}


def _reason(row: Any, ok: bool, member: Any) -> str:
    # Recorded for the operator, never answered to the caller.
    if row is None:
        return "unknown email"
    if not ok:
        return "wrong password"
    if row["disabled_at"] is not None:
        return "account disabled"
    return "no membership in the workspace" if member is None else "refused"


def _check_role(role: str) -> None:
    if role not in ROLE_SCOPES:
        raise InvalidInput("invalid role", [{"field": "body.role", "error": f"one of {sorted(ROLE_SCOPES)}"}])

