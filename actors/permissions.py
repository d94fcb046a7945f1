"""Roles and the permissions they grant, defined once.

A role is a set of permissions plus the roles it inherits: `admin` inherits `reviewer`,
`analyst` and `recorder` (an operator can do what any client can, as the old admin scope
could); `owner` inherits `admin`. Accounts (memberships) and API keys both carry one role in one
workspace; the API layer (serve_app/permissions_table.py) names the permission each route needs.

`sessions.all` widens the session permissions from the sessions the caller's key (or recorder)
created to every session of the workspace: a `recorder` key lacks it, so it reads and writes
only its own recordings, and another's session answers 404 as if it did not exist.
"""

from __future__ import annotations

from functools import cache
from typing import Literal, get_args

from actors.errors import InvalidInput

__all__ = [
    "Permission",
    "Role",
    "ALL_PERMISSIONS",
    "ALL_ROLES",
    "LEGACY_SCOPE_ROLES",
    "can_grant",
    "check_role",
    "permissions_of",
    "role_for_scopes",
]

Permission = Literal[
    "sessions.create",  # start a recording
    "sessions.write",  # events, screenshots, finish (own sessions, or all with sessions.all)
    "sessions.read",  # a session's state, events, screenshots, archive; lists and search
    "sessions.all",  # every session of the workspace, not only those the key recorded
    "stats.read",  # the dashboard's counters, trends
    "review.read",  # flags and the review queue
    "review.write",  # flag a session, move a flag along
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
]
Role = Literal["owner", "admin", "reviewer", "analyst", "recorder"]

ALL_PERMISSIONS: tuple[Permission, ...] = get_args(Permission)
ALL_ROLES: tuple[Role, ...] = get_args(Role)

# Each role's own permissions and the roles it inherits; permissions_of resolves the closure.
_OWN: dict[Role, frozenset[Permission]] = {
    "recorder": frozenset({"sessions.create", "sessions.write", "sessions.read"}),
    "analyst": frozenset({"sessions.read", "sessions.all", "stats.read", "review.read", "datasets.read",
                          "finetunes.read", "models.predict"}),
    "reviewer": frozenset({"sessions.read", "sessions.all", "stats.read", "review.read", "review.write"}),
    "admin": frozenset({"datasets.create", "finetunes.create", "keys.manage", "members.manage", "audit.read",
                        "workspaces.manage"}),
    "owner": frozenset({"orgs.manage"}),
}
_INHERITS: dict[Role, tuple[Role, ...]] = {
    "recorder": (),
    "analyst": (),
    "reviewer": (),
    "admin": ("reviewer", "analyst", "recorder"),
    "owner": ("admin",),
}

# The scopes keys had before roles (migration 0009 maps stored keys the same way).
LEGACY_SCOPE_ROLES: dict[str, Role] = {"admin": "admin", "review": "reviewer", "ingest": "recorder", "read": "analyst"}


@cache
def permissions_of(role: Role) -> frozenset[Permission]:
    """The role's permissions with everything it inherits."""
    granted = set(_OWN[role])
    for parent in _INHERITS[role]:
        granted |= permissions_of(parent)
    return frozenset(granted)


def check_role(role: str) -> Role:
    if role not in ALL_ROLES:
        raise InvalidInput(f"role must be one of {list(ALL_ROLES)}; got {role!r}",
                           [{"field": "role", "error": "unknown role"}])
    return role  # type: ignore[return-value]


def role_for_scopes(scopes: list[str] | tuple[str, ...] | frozenset[str]) -> Role:
    """The role a key of the old scopes gets: the first of admin, reviewer, recorder, analyst
    it had. A key with both `ingest` and `read` becomes a recorder (it reads what it recorded);
    giving it the reading of every session would take a role with more than it had."""
    for scope in ("admin", "review", "ingest", "read"):
        if scope in scopes:
            return LEGACY_SCOPE_ROLES[scope]
    raise InvalidInput(f"scopes must include one of {sorted(LEGACY_SCOPE_ROLES)}; got {list(scopes)}")


def can_grant(granter: Role, role: Role) -> bool:
    """A caller may hand out a role only if it holds every permission of it (no escalation)."""
    return permissions_of(role) <= permissions_of(granter)
