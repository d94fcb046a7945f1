"""Roles and their inherited permissions (actors/permissions.py), the old scopes' mapping, and
the route table's lookups (serve_app/permissions_table.py)."""

from __future__ import annotations

import uuid

import pytest

from actors.auth import Principal
from actors.errors import Forbidden, InvalidInput
from actors.permissions import (ALL_PERMISSIONS, ALL_ROLES, can_grant, check_role, permissions_of,
                                permissions_of_key, role_for_scopes)
from serve_app.permissions_table import ROUTE_PERMISSIONS, markdown_table, permission_for


def test_admin_inherits_reviewer_analyst_and_recorder_and_owner_inherits_admin() -> None:
    admin = permissions_of("admin")
    for child in ("reviewer", "analyst", "recorder"):
        assert permissions_of(child) < admin, child
    assert admin < permissions_of("owner")
    assert "orgs.manage" in permissions_of("owner") and "orgs.manage" not in admin


def test_siblings_do_not_hold_each_others_permissions() -> None:
    assert "review.write" not in permissions_of("analyst")
    assert "datasets.read" not in permissions_of("reviewer")
    assert not permissions_of("recorder") & {"sessions.read", "sessions.write_all", "stats.read", "datasets.read"}
    assert "sessions.write" not in permissions_of("analyst") | permissions_of("reviewer")


def test_every_permission_is_held_by_some_role_and_the_owner_holds_all() -> None:
    assert permissions_of("owner") == frozenset(ALL_PERMISSIONS)
    assert set(ALL_ROLES) == {"owner", "admin", "reviewer", "analyst", "recorder"}


@pytest.mark.parametrize(("scopes", "role"), [
    (["admin"], "admin"), (["ingest", "read", "admin"], "admin"), (["review"], "reviewer"),
    (["ingest"], "recorder"), (["ingest", "read"], "recorder"), (["read"], "analyst"),
])
def test_old_scopes_map_to_roles(scopes: list[str], role: str) -> None:
    assert role_for_scopes(scopes) == role


def test_an_old_key_keeps_what_its_scopes_allowed_and_no_more() -> None:
    both = permissions_of_key("recorder", frozenset({"ingest", "read"}))
    assert both == permissions_of("recorder") | permissions_of("analyst")
    assert "sessions.write_all" not in both  # still writes only to its own sessions
    assert permissions_of_key("analyst", frozenset({"read"})) == permissions_of("analyst")
    assert permissions_of_key("reviewer") == permissions_of("reviewer")  # a key made with a role


def test_unknown_role_or_empty_scopes_refused() -> None:
    with pytest.raises(InvalidInput):
        check_role("root")
    with pytest.raises(InvalidInput):
        role_for_scopes([])


def test_no_role_grants_more_than_it_holds() -> None:
    assert can_grant("owner", "owner") and can_grant("admin", "recorder") and can_grant("admin", "admin")
    assert not can_grant("admin", "owner") and not can_grant("analyst", "recorder")


def principal(role: str) -> Principal:
    return Principal(org_id=uuid.uuid4(), key_id=uuid.uuid4(), workspace_id=uuid.uuid4(), role=role)  # type: ignore[arg-type]


def test_require_names_the_role_and_permission() -> None:
    principal("admin").require("datasets.create")
    with pytest.raises(Forbidden) as refused:
        principal("analyst").require("datasets.create")
    assert "analyst" in refused.value.message and refused.value.details == [
        {"permission": "datasets.create", "role": "analyst"}]


def test_a_recorder_writes_only_to_what_its_key_or_recorder_created() -> None:
    rec = Principal(org_id=uuid.uuid4(), key_id=uuid.uuid4(), workspace_id=uuid.uuid4(), role="recorder",
                    recorder_id=uuid.uuid4())
    assert rec.owns_session(rec.workspace_id, rec.key_id, None)
    assert rec.owns_session(rec.workspace_id, uuid.uuid4(), rec.recorder_id)  # a rotated key, same recorder
    assert not rec.owns_session(rec.workspace_id, uuid.uuid4(), None)
    assert not rec.owns_session(uuid.uuid4(), rec.key_id, None)  # another workspace, whoever made it
    admin = principal("admin")
    assert admin.owns_session(admin.workspace_id, uuid.uuid4(), None)
    assert not admin.owns_session(uuid.uuid4(), uuid.uuid4(), None)
    reader = principal("analyst")  # reading: the whole workspace, nothing outside it
    assert reader.owns_session(reader.workspace_id, uuid.uuid4(), None, write=False)
    assert not reader.owns_session(uuid.uuid4(), uuid.uuid4(), None, write=False)


def test_the_table_resolves_concrete_paths_and_refuses_unknown_ones() -> None:
    sid = str(uuid.uuid4())
    assert permission_for("POST", f"/v1/sessions/{sid}/events") == "sessions.write"
    assert permission_for("GET", f"/v1/sessions/{sid}/events") == "sessions.read"
    assert permission_for("WS", f"/v1/sessions/{sid}/stream") == "sessions.write"
    assert permission_for("DELETE", f"/v1/sessions/{sid}") == "data.delete"
    for method, path in [("DELETE", f"/v1/sessions/{sid}/events"), ("GET", "/v1/nothing"), ("GET", "/healthz")]:
        with pytest.raises(Forbidden):  # no rule, or a public route: never a permission to pass
            permission_for(method, path)


def test_every_rule_names_a_known_permission_and_the_markdown_lists_them() -> None:
    table = markdown_table()
    for (method, path), permission in ROUTE_PERMISSIONS.items():
        assert permission is None or permission in ALL_PERMISSIONS
        if permission is not None:
            assert f"`{method} {path}` | {permission} |" in table


def test_every_route_of_the_app_has_a_rule() -> None:
    """A new route without a permission rule fails here (and is refused at run time)."""
    from serve_app.ingress import api
    from serve_app.permissions_table import app_routes

    routes = set(app_routes(api.routes))
    assert not routes - set(ROUTE_PERMISSIONS), "routes without a rule in serve_app/permissions_table.py"


def test_the_readmes_permission_table_is_the_generated_one() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = readme.index("<!-- permission-table")
    body = readme[readme.index("\n", start) + 1: readme.index("<!-- /permission-table -->")]
    assert body.strip() == markdown_table(), "regenerate: python -c 'from serve_app.permissions_table " \
                                             "import markdown_table; print(markdown_table())'"
