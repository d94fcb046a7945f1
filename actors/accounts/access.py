"""Access tokens presented to the API: the signature and claims (TokenSigner), then the account's
state now: not disabled, still a member of the token's workspace (its role now, so a role
change applies without a new token), and the token issued after the last password change.

That state is remembered per replica for `ttl_s` (the API key cache's figure, auth.cache_ttl_s),
so a request costs no query most of the time: a disabled account, a removed member or a password
change takes effect within that time, as a revoked key does.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from actors.accounts.tokens import AccessClaims, TokenSigner
from actors.auth import Principal
from actors.errors import Unauthenticated
from actors.storage import accounts_repo

__all__ = ["AccountTokens"]


@dataclass
class AccountTokens:
    signer: TokenSigner
    ttl_s: float
    max_entries: int = 10_000
    _state: dict[tuple[uuid.UUID, uuid.UUID], tuple[float, Any]] = field(default_factory=dict, repr=False)

    def claims(self, token: str) -> AccessClaims:
        return self.signer.verify(token)

    async def principal(self, pool: asyncpg.Pool, token: str) -> Principal:
        claims = self.signer.verify(token)
        state = await self._account_state(pool, claims.account_id, claims.workspace_id)
        if state is None or state["disabled_at"] is not None or state["role"] is None:
            raise Unauthenticated("invalid access token")
        if claims.issued_at < state["valid_after"]:
            raise Unauthenticated("the access token was revoked (password changed); sign in again")
        return claims.principal(state["role"])

    async def _account_state(self, pool: asyncpg.Pool, account_id: uuid.UUID, workspace_id: uuid.UUID) -> Any:
        now = time.monotonic()
        hit = self._state.get((account_id, workspace_id))
        if hit is not None and hit[0] > now:
            return hit[1]
        state = await accounts_repo.token_state(pool, account_id, workspace_id)
        if self.ttl_s > 0:
            if len(self._state) >= self.max_entries:
                self._state.clear()
            self._state[(account_id, workspace_id)] = (now + self.ttl_s, state)
        return state

    def forget(self, account_id: uuid.UUID) -> None:
        """This replica's own changes (a password change) apply at once here."""
        for key in [k for k in self._state if k[0] == account_id]:
            del self._state[key]
