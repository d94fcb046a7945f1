"""The one table from each route (method and path template) to the permission it needs.

`Services.authorize(request)` finds the request's route here and checks the caller's role
(actors/permissions.py); route handlers never name a permission themselves. A route missing
from the table is refused (403) rather than let through, and tests/integration/test_authz_matrix.py
walks every route of the app against this table, so a new route without a rule fails there.
`PUBLIC` routes need no credential (they hold no data, or check their own, like /metrics).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from starlette.routing import compile_path

from actors.errors import Forbidden
from actors.permissions import ALL_ROLES, Permission, permissions_of

__all__ = ["PUBLIC", "ROUTE_PERMISSIONS", "app_routes", "markdown_table", "permission_for"]

PUBLIC = None
_S = "/v1/sessions/{session_id}"

ROUTE_PERMISSIONS: dict[tuple[str, str], Permission | None] = {
    ("POST", "/v1/sessions"): "sessions.create",
    ("GET", _S): "sessions.read",
    ("POST", _S + "/finish"): "sessions.write",
    ("POST", _S + "/events"): "sessions.write",
    ("WS", _S + "/stream"): "sessions.write",
    ("PUT", _S + "/screenshots/{screenshot_id}"): "sessions.write",
    ("GET", _S + "/screenshots/{screenshot_id}"): "sessions.read",
    ("GET", _S + "/contact-sheet"): "sessions.read",
    ("GET", _S + "/events"): "sessions.read",
    ("GET", _S + "/archive"): "sessions.read",
    ("GET", _S + "/replay"): "sessions.read",
    ("DELETE", _S): "data.delete",
    ("DELETE", "/v1/recorders/{recorder_id}"): "data.delete",
    # Consent (issue 18.1): who may record may read the notice and give or withdraw their own
    # recorder's consent; admins set their workspace's notice.
    ("GET", "/v1/consent/notice"): "sessions.create",
    ("GET", "/v1/consent"): "sessions.create",
    ("POST", "/v1/consent"): "sessions.create",
    ("DELETE", "/v1/consent"): "sessions.create",
    ("PUT", "/v1/workspaces/{workspace_id}/notice"): "workspaces.manage",
    ("POST", "/v1/recorders/{recorder_id}/export"): "data.export",
    ("GET", "/v1/exports/{export_id}"): "data.export",
    ("GET", "/v1/exports/{export_id}/download"): "data.export",
    ("POST", "/v1/datasets"): "datasets.create",
    ("GET", "/v1/datasets"): "datasets.read",
    ("GET", "/v1/datasets/{dataset_id}"): "datasets.read",
    ("GET", "/v1/datasets/{dataset_id}/files/{name}"): "datasets.read",
    ("POST", "/v1/finetunes"): "finetunes.create",
    ("GET", "/v1/finetunes/{finetune_id}"): "finetunes.read",
    ("POST", "/v1/finetunes/{finetune_id}/cancel"): "finetunes.create",
    ("POST", "/v1/models/{model_id}/predict"): "models.predict",
    ("GET", "/v1/stats"): "stats.read",
    ("GET", "/v1/live"): "stats.read",
    ("GET", "/v1/sessions"): "sessions.read",
    ("GET", "/v1/analytics/trends"): "stats.read",
    ("POST", _S + "/flags"): "review.write",
    ("GET", _S + "/flags"): "review.read",
    ("PATCH", "/v1/flags/{flag_id}"): "review.write",
    ("GET", "/v1/review/queue"): "review.write",  # the reviewers' work list
    ("GET", "/v1/moderation/thresholds"): "review.read",
    ("PUT", "/v1/moderation/thresholds"): "workspaces.manage",  # admins only (issue 19.3)
    ("POST", "/v1/invitations"): "members.manage",
    ("GET", "/v1/audit"): "audit.read",
    ("GET", "/v1/orgs"): "orgs.manage",
    ("POST", "/v1/orgs"): "orgs.manage",
    ("GET", "/v1/workspaces"): "workspaces.manage",
    ("POST", "/v1/workspaces"): "workspaces.manage",
    # Retention periods (issue 18.4): admins read and set their workspace's.
    ("GET", "/v1/workspaces/{workspace_id}/retention"): "workspaces.manage",
    ("PUT", "/v1/workspaces/{workspace_id}/retention"): "workspaces.manage",
    ("GET", "/v1/keys"): "keys.manage",
    ("POST", "/v1/keys"): "keys.manage",
    # Signing in and what a signed-in person does with their own account: these check the
    # account's own credentials (actors/accounts), whatever its role.
    ("POST", "/v1/auth/signin"): PUBLIC,
    ("POST", "/v1/auth/refresh"): PUBLIC,
    ("DELETE", "/v1/auth/refresh"): PUBLIC,
    ("GET", "/v1/auth/me"): PUBLIC,
    ("POST", "/v1/auth/password"): PUBLIC,
    ("POST", "/v1/invitations/accept"): PUBLIC,
    # No credential: pages and assets that hold no data, the API description, health.
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/assets/{name}"): PUBLIC,
    ("GET", "/dashboard"): PUBLIC,
    ("GET", "/dashboard/dashboard.js"): PUBLIC,
    ("GET", "/dashboard/dashboard.css"): PUBLIC,
    ("GET", "/sessions"): PUBLIC,
    ("GET", "/sessions/{session_id}"): PUBLIC,
    ("GET", "/trends"): PUBLIC,
    ("GET", "/pages/{name}"): PUBLIC,
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,  # its own key (security.metrics_key), not a role
}
_COMPILED: list[tuple[str, re.Pattern[str], tuple[str, str]]] = [
    (method, compile_path(path)[0], (method, path)) for method, path in ROUTE_PERMISSIONS
]


def permission_for(method: str, path: str) -> Permission:
    """The permission a request needs, by its method ("WS" for a WebSocket) and path. Refused
    when no rule names it: a route someone forgot to add is closed, not open."""
    for rule_method, pattern, key in _COMPILED:
        if rule_method == method and pattern.fullmatch(path):
            permission = ROUTE_PERMISSIONS[key]
            if permission is not None:
                return permission
    raise Forbidden(f"no permission rule covers {method} {path}", code="no_permission_rule")


def app_routes(routes: Iterable[Any]) -> Iterator[tuple[str, str]]:
    """(method, path template) of every route of a FastAPI app, included routers flattened
    (Serve's ingress includes the class's routes as a router); "WS" for WebSocket routes."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from app_routes(inner.routes)
            continue
        methods = getattr(route, "methods", None)
        if methods is None:
            yield ("WS", route.path)
            continue
        for method in sorted(set(methods) - {"HEAD"}):
            yield (method, route.path)


def _mark(permission: Permission, held: frozenset[Permission]) -> str:
    if permission not in held:
        return ""
    # Without sessions.write_all, writes reach only the sessions the key (or recorder) made.
    own_only = permission == "sessions.write" and "sessions.write_all" not in held
    return "own" if own_only else "yes"


def markdown_table() -> str:
    """The README's permission table: each route with its permission and the roles holding it."""
    lines = ["| route | permission | " + " | ".join(ALL_ROLES) + " |",
             "| --- | --- | " + " | ".join("---" for _ in ALL_ROLES) + " |"]
    for (method, path), permission in ROUTE_PERMISSIONS.items():
        if permission is None:
            continue
        marks = [_mark(permission, permissions_of(role)) for role in ALL_ROLES]
        lines.append(f"| `{method} {path}` | {permission} | " + " | ".join(marks) + " |")
    return "\n".join(lines)
