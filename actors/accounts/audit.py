"""The audit trail: `audit(...)`, which every security event and admin action calls.

An entry says who (a key, an account, the CLI, the system, or nobody yet: a sign-in attempt),
what (an action from ACTIONS, its outcome and target), when (the database's clock), from which
address and in which request (the request id bound by the ingress, actors.logs). Details are
small and never secret: ids, names, counts, roles; never a password, token, key, email of an
unknown account or any recorded value. `details` is checked for secret-looking names, so a
careless caller fails in tests instead of leaking.

The table is append-only (migration 0010's trigger). Writing an entry is part of the action:
callers write it with the same connection inside their transaction when they have one.
"""

from __future__ import annotations

import ipaddress
import logging
import uuid
from typing import Any, Literal

import asyncpg

from actors.auth import Principal
from actors.logs import current_request_id
from actors.storage import audit_repo

__all__ = ["ACTIONS", "Actor", "actor_of", "audit", "inet_or_none"]

log = logging.getLogger(__name__)

ACTIONS = frozenset({
    "signin.success", "signin.failure", "signout.success", "token.refresh", "token.reuse",
    "password.change", "account.create", "invitation.create", "invitation.accept",
    "key.create", "key.rotate", "key.revoke", "role.change",
    "dataset.start", "finetune.start", "export.start", "export.download", "session.delete", "data.delete",
    "recorder.delete", "data.purge",
    "org.create", "workspace.create",
    "moderation.thresholds", "retention.update", "retention.run",
    "consent.agree", "consent.withdraw", "notice.update",
})
Outcome = Literal["success", "failure", "refused"]
_SECRET_WORDS = ("password", "secret", "token", "api_key", "pepper", "hash")


class Actor:
    """Who acted: kind ('key', 'account', 'cli', 'system', 'anonymous') and id."""

    def __init__(self, kind: str, actor_id: str | None = None, org_id: uuid.UUID | None = None,
                 workspace_id: uuid.UUID | None = None):
        self.kind, self.actor_id, self.org_id, self.workspace_id = kind, actor_id, org_id, workspace_id


def actor_of(principal: Principal) -> Actor:
    """The actor of an authenticated request: an account (signed in) or an API key."""
    account_id = getattr(principal, "account_id", None)
    kind = getattr(principal, "actor_kind", None) or ("account" if account_id else "key")
    actor_id = str(account_id or principal.key_id)
    return Actor(kind, actor_id, principal.org_id, getattr(principal, "workspace_id", None))


def inet_or_none(address: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address(address)) if address else None
    except ValueError:  # a test client's "testclient", a unix socket: no address to record
        return None


def _check_details(details: dict[str, Any]) -> dict[str, Any]:
    for name in details:
        if any(word in name.lower() for word in _SECRET_WORDS):
            raise ValueError(f"audit details must not hold secrets: {name!r}")
    return details


async def audit(
    conn: asyncpg.Pool | asyncpg.Connection,
    action: str,
    actor: Actor,
    *,
    outcome: Outcome = "success",
    target: str | None = None,
    address: str | None = None,
    org_id: uuid.UUID | None = None,
    workspace_id: uuid.UUID | None = None,
    subject: str | None = None,
    details: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> int:
    """Append one entry; returns its id. The organisation and workspace default to the actor's."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}; add it to ACTIONS")
    entry = {
        "org_id": org_id or actor.org_id, "workspace_id": workspace_id or actor.workspace_id,
        "actor_kind": actor.kind, "actor_id": actor.actor_id, "action": action, "outcome": outcome,
        "target": target, "address": inet_or_none(address), "request_id": request_id or current_request_id(),
        "subject": subject, "details": _check_details(dict(details or {})),
    }
    audit_id = await audit_repo.insert_entry(conn, entry)
    if outcome != "success":  # failures and refusals reach the log too, for alerting
        log.warning("audit %s %s by %s %s from %s (entry %d)", action, outcome, actor.kind, actor.actor_id,
                    address, audit_id)
    return audit_id
