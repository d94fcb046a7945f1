"""Roles and the permissions they grant, defined once.

A role is a set of permissions plus the roles it inherits: `admin` inherits `reviewer`,
`analyst` and `recorder` (an operator can do what any client can, as the old admin scope
could); `owner` inherits `admin`. Accounts (memberships) and API keys both carry one role in one
workspace; the API layer (serve_app/permissions_table.py) names the permission each route needs.

A `recorder` writes only to the sessions its key (or its recorder) created: another's session
answers 404 as if it did not exist. `sessions.write_all` (admins) lifts that. Readers
(`sessions.read`) read every session of their workspace.

Keys made before roles keep what their scopes allowed: a key's permissions are its role's plus
those of the roles its old scopes map to (`LEGACY_SCOPE_ROLES`), so an `ingest,read` key is a
recorder that also reads like an analyst (and still writes only to its own sessions).

A caller is a `Principal`: an API key or a signed-in account, with its role in one workspace
(actors/auth.py makes one from a key, actors/accounts from a sign-in).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, Literal, get_args

from actors.errors import Forbidden, InvalidInput

__all__ = [
    "DEFAULT_ORG_ID",
    "DEFAULT_WORKSPACE_ID",
    "Permission",
    "Principal",
    "Role",
    "Scope",
    "ALL_SCOPES",
    "ALL_PERMISSIONS",
    "ALL_ROLES",
    "LEGACY_SCOPE_ROLES",
    "can_grant",
    "check_role",
    "permissions_of",
    "permissions_of_key",
    "role_for_scopes",
]

Permission = Literal[
    "sessions.create",  # start a recording
    "sessions.write",  # events, stream, screenshots, finish: of the sessions the key created
    "sessions.write_all",  # ... of every session of the workspace
    "sessions.read",  # a session's state, events, screenshots, archive, replay; list and search
    "stats.read",  # the dashboard's counters, live updates, trends
    "review.read",  # a session's flags
    "review.write",  # flag a session, move a flag along, the review queue
    "datasets.read",
    "datasets.create",
    "finetunes.read",
    "finetunes.create",  # start or cancel a fine-tune
    "models.predict",
    "keys.manage",  # create, list, rotate, revoke keys and recorders of the workspace
    "members.manage",  # invite people, change their roles
    "audit.read",
    "workspaces.manage",  # create and list the organisation's workspaces
    "orgs.manage",  # create and list organisations
    "data.delete",  # delete a session or a recorder's data (hidden at once, purged later)
    "data.export",  # export everything kept about a recorder (a copy for the person recorded)
]
Role = Literal["owner", "admin", "reviewer", "analyst", "recorder"]

ALL_PERMISSIONS: tuple[Permission, ...] = get_args(Permission)
ALL_ROLES: tuple[Role, ...] = get_args(Role)

# Each role's own permissions and the roles it inherits; permissions_of resolves the closure.
_OWN: dict[Role, frozenset[Permission]] = {
    "recorder": frozenset({"sessions.create", "sessions.write"}),
    "analyst": frozenset({"sessions.read", "stats.read", "review.read", "datasets.read", "finetunes.read",
                          "models.predict"}),
    "reviewer": frozenset({"sessions.read", "stats.read", "review.read", "review.write"}),
    "admin": frozenset({"sessions.write_all", "datasets.create", "finetunes.create", "keys.manage",
                        "members.manage", "audit.read", "workspaces.manage", "data.delete",
                        "data.export"}),
    "owner": frozenset({"orgs.manage"}),
}
_INHERITS: dict[Role, tuple[Role, ...]] = {
    "recorder": (),
    "analyst": (),
    "reviewer": (),
    "admin": ("reviewer", "analyst", "recorder"),
    "owner": ("admin",),
}

DEFAULT_ORG_ID = uuid.UUID("00000000-0000-0000-0000-000000000001")
DEFAULT_WORKSPACE_ID = uuid.UUID("00000000-0000-0000-0001-000000000001")  # its default workspace (0009)

# The scopes keys had before roles (migration 0009 maps stored keys the same way).
# review: flag sessions and steps, move flags along, read the review queue (issue 16).
Scope = Literal["ingest", "read", "admin", "review"]
ALL_SCOPES: tuple[Scope, ...] = ("ingest", "read", "admin", "review")
LEGACY_SCOPE_ROLES: dict[str, Role] = {"admin": "admin", "review": "reviewer", "ingest": "recorder", "read": "analyst"}


@cache
def permissions_of(role: Role) -> frozenset[Permission]:
    """The role's permissions with everything it inherits."""
    granted = set(_OWN[role])
    for parent in _INHERITS[role]:
        granted |= permissions_of(parent)
    return frozenset(granted)


@cache
def _key_permissions(role: Role, legacy: frozenset[str]) -> frozenset[Permission]:
    granted = set(permissions_of(role))
    for scope in legacy:
        if scope in LEGACY_SCOPE_ROLES:
            granted |= permissions_of(LEGACY_SCOPE_ROLES[scope])
    return frozenset(granted)


def permissions_of_key(role: Role, scopes: frozenset[str] = frozenset()) -> frozenset[Permission]:
    """A key's permissions: its role's, plus those of the roles its old scopes map to (keys made
    with a role have no scopes)."""
    return _key_permissions(role, scopes)


def check_role(role: str) -> Role:
    if role not in ALL_ROLES:
        raise InvalidInput(f"role must be one of {list(ALL_ROLES)}; got {role!r}",
                           [{"field": "role", "error": "unknown role"}])
    return role  # type: ignore[return-value]


def role_for_scopes(scopes: list[str] | tuple[str, ...] | frozenset[str]) -> Role:
    """The role a key of the old scopes is shown with: the first of admin, reviewer, recorder,
    analyst it had (its permissions also include the other scopes' roles: permissions_of_key)."""
    for scope in ("admin", "review", "ingest", "read"):
        if scope in scopes:
            return LEGACY_SCOPE_ROLES[scope]
    raise InvalidInput(f"scopes must include one of {sorted(LEGACY_SCOPE_ROLES)}; got {list(scopes)}")


def can_grant(granter: Role, role: Role) -> bool:
    """A caller may hand out a role only if it holds every permission of it (no escalation)."""
    return permissions_of(role) <= permissions_of(granter)


@dataclass(frozen=True)
class Principal:
    """Who is calling: an API key or a signed-in account, acting in one workspace of one
    organisation with one role (actors/permissions.py gives the role's permissions)."""

    org_id: uuid.UUID
    key_id: uuid.UUID | None
    scopes: frozenset[str] = frozenset()  # a key's old scopes: they add their roles' permissions
    expires_at: datetime | None = None
    workspace_id: uuid.UUID = DEFAULT_WORKSPACE_ID
    role: Role = "recorder"
    actor_kind: Literal["key", "account"] = "key"
    account_id: uuid.UUID | None = None
    recorder_id: uuid.UUID | None = None

    @property
    def permissions(self) -> frozenset[Permission]:
        return permissions_of_key(self.role, self.scopes)

    def allows(self, permission: Permission) -> bool:
        return permission in self.permissions

    def require(self, permission: Permission) -> None:
        if permission not in self.permissions:
            who = "API key" if self.actor_kind == "key" else "account"
            raise Forbidden(f"this {who}'s role '{self.role}' lacks the '{permission}' permission",
                            [{"permission": permission, "role": self.role}])

    def in_workspace(self, row: Any) -> bool:
        """Whether a row (with org_id and workspace_id) belongs to this caller's workspace."""
        return row is not None and row["org_id"] == self.org_id and row["workspace_id"] == self.workspace_id

    def owns_session(self, workspace_id: uuid.UUID, created_by_key: uuid.UUID | None,
                     recorder_id: uuid.UUID | None, *, write: bool = True) -> bool:
        """Whether this caller may touch a session with these owner columns: one of its workspace,
        and to write (without `sessions.write_all`), one its key or its recorder created."""
        if workspace_id != self.workspace_id:
            return False
        if not write or self.allows("sessions.write_all"):
            return True
        if self.key_id is not None and created_by_key == self.key_id:
            return True
        return self.recorder_id is not None and recorder_id == self.recorder_id
