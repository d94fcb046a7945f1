"""The audit trail against the running stack: who reads what of GET /v1/audit (an owner the
organisation, an admin its workspace and its own actions), the admin API's entries (organisation,
workspace and key made, the role given), exports (archive, events, dataset files) and role
changes; no entry holds a secret. And migration 0018's foreign keys to workspaces."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from actors import auth
from actors.accounts.audit import Actor
from actors.accounts.people import People
from actors.storage.postgres import apply_migrations
from tests.support.databases import fresh_database, migrations_until, with_pool
from tests.support.stack import make_key, run_db, write_object

pytestmark = pytest.mark.integration

PASSWORD = "violet harbour lantern"


def _owner_key(stack: Any) -> str:
    return with_pool(stack, lambda pool: auth.create_key(pool, role="owner", org_id=auth.DEFAULT_ORG_ID,
                                                      workspace_id=auth.DEFAULT_WORKSPACE_ID, name="audit-owner",
                                                      pepper=auth.pepper_of(stack.settings.auth)))[1]


def _client(stack: Any, key: str) -> httpx.Client:
    return httpx.Client(base_url=stack.endpoint, timeout=30, headers={"Authorization": f"Bearer {key}"})


def _entries(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    answer = client.get("/v1/audit", params={"limit": 200, **params})
    assert answer.status_code == 200, answer.text
    return answer.json()["items"]


def _entries_of(stack: Any, action: str, target: str) -> list[dict[str, Any]]:
    rows = run_db(stack, "SELECT * FROM audit_log WHERE action = $1 AND target = $2 ORDER BY audit_id", action, target)
    return [dict(r) | {"details": json.loads(r["details"]) if isinstance(r["details"], str) else r["details"]}
            for r in rows]


def _no_secret(stack: Any, *secrets: str) -> None:
    dump = json.dumps([dict(r) for r in run_db(stack, "SELECT * FROM audit_log")], default=str)
    for secret in secrets:
        assert secret not in dump
        if secret.startswith(auth.KEY_TAG):  # a key's secret part alone neither
            assert secret[len(auth.key_prefix(secret)) + 1:] not in dump


def test_admin_api_actions_are_audited_and_admins_read_only_their_workspace(stack: Any) -> None:
    with _client(stack, _owner_key(stack)) as first_owner:
        made = first_owner.post("/v1/orgs", json={"name": f"audited-{uuid.uuid4().hex[:8]}"})
        assert made.status_code == 201, made.text
    org, main_ws, owner_key = made.json()["org_id"], made.json()["workspace_id"], made.json()["owner_key"]
    [org_entry] = _entries_of(stack, "org.create", org)
    assert org_entry["org_id"] == auth.DEFAULT_ORG_ID and org_entry["actor_kind"] == "key"
    [owner_entry] = _entries_of(stack, "key.create", owner_key["key_id"])
    assert (str(owner_entry["org_id"]), str(owner_entry["workspace_id"])) == (org, main_ws)
    assert owner_entry["details"]["role"] == "owner"

    with _client(stack, owner_key["key"]) as owner:
        team = owner.post("/v1/workspaces", json={"name": "team"})
        assert team.status_code == 201, team.text
        team_ws = team.json()["workspace_id"]
        assert _entries_of(stack, "workspace.create", team_ws)[0]["details"] == {"name": "team"}
        admin_main = owner.post("/v1/keys", json={"role": "admin", "name": "main admin"}).json()
        admin_team = owner.post("/v1/keys", json={"role": "admin", "workspace_id": team_ws}).json()
    with _client(stack, admin_team["key"]) as team_admin:
        analyst = team_admin.post("/v1/keys", json={"role": "analyst", "recorder": "ana", "expires_in_s": 3600})
        assert analyst.status_code == 201, analyst.text
    [given] = _entries_of(stack, "key.create", analyst.json()["key_id"])
    assert str(given["workspace_id"]) == team_ws and given["actor_id"] == admin_team["key_id"]
    assert given["details"] == {"role": "analyst", "name": "", "expires_in_s": 3600,
                                "recorder_id": analyst.json()["recorder_id"]}
    _no_secret(stack, owner_key["key"], admin_main["key"], admin_team["key"], analyst.json()["key"])

    # An entry of the main workspace by the team's admin (its own action, elsewhere), and one of
    # the organisation with no workspace (a sign-in attempt before anyone is known).
    own_elsewhere = run_db(stack, "INSERT INTO audit_log (org_id, workspace_id, actor_kind, actor_id, action, outcome)"
                           " VALUES ($1, $2, 'key', $3, 'export.download', 'success') RETURNING audit_id",
                           uuid.UUID(org), uuid.UUID(main_ws), admin_team["key_id"])[0]["audit_id"]
    nowhere = run_db(stack, "INSERT INTO audit_log (org_id, actor_kind, action, outcome)"
                     " VALUES ($1, 'anonymous', 'signin.failure', 'failure') RETURNING audit_id",
                     uuid.UUID(org))[0]["audit_id"]

    with _client(stack, owner_key["key"]) as owner, _client(stack, admin_main["key"]) as main_admin, \
            _client(stack, admin_team["key"]) as team_admin:
        everything = {e["audit_id"]: e for e in _entries(owner)}
        assert {e["org_id"] for e in everything.values()} == {org}
        assert {own_elsewhere, nowhere} <= set(everything)
        assert {e["target"] for e in everything.values() if e["action"] == "key.create"} == \
            {owner_key["key_id"], admin_main["key_id"], admin_team["key_id"], analyst.json()["key_id"]}

        mains = _entries(main_admin)
        assert mains and all(e["workspace_id"] == main_ws for e in mains)
        assert {e["audit_id"] for e in mains} == {i for i, e in everything.items() if e["workspace_id"] == main_ws}
        teams = _entries(team_admin)
        assert {e["audit_id"] for e in teams} == \
            {i for i, e in everything.items() if e["workspace_id"] == team_ws} | {own_elsewhere}
        assert analyst.json()["key_id"] in {e["target"] for e in teams}
        assert nowhere not in {e["audit_id"] for e in mains + teams}
        # Asking for the other workspace by filter shows nothing of it either.
        assert _entries(main_admin, workspace_id=team_ws) == []
        assert {e["audit_id"] for e in _entries(owner, workspace_id=team_ws)} == \
            {i for i, e in everything.items() if e["workspace_id"] == team_ws}


def test_exports_are_audited_with_sizes_and_never_values(stack: Any) -> None:
    reader = make_key(stack, ["read"])
    session_id = uuid.uuid4()
    run_db(stack, "INSERT INTO sessions (session_id, org_id, type, request_hash, archive_key, archive_sha256)"
                  " VALUES ($1, $2, 'human', $3, $4, 'abc')", session_id, auth.DEFAULT_ORG_ID, b"x",
           f"test-archives/{session_id}.zip")
    write_object(stack, f"test-archives/{session_id}.zip", b"PK-archive-bytes")
    dataset_id = uuid.uuid4()
    files = {"report.json": {"key": f"test-datasets/{dataset_id}/report.json", "bytes": 13, "sha256": "x"}}
    run_db(stack, "INSERT INTO datasets (dataset_id, org_id, name, config, code_version, status, files)"
                  " VALUES ($1, $2, 'audited', '{}', 'v', 'succeeded', $3::jsonb)",
           dataset_id, auth.DEFAULT_ORG_ID, json.dumps(files))
    write_object(stack, files["report.json"]["key"], b'{"secret": 1}')

    with _client(stack, reader) as client:
        assert client.get(f"/v1/sessions/{session_id}/archive").content == b"PK-archive-bytes"
        assert client.get(f"/v1/sessions/{session_id}/events").status_code == 200
        assert client.get(f"/v1/sessions/{session_id}/events", params={"after_seq": 5}).status_code == 200
        assert client.get(f"/v1/datasets/{dataset_id}/files/report.json").content == b'{"secret": 1}'
        assert client.get(f"/v1/datasets/{dataset_id}/files/train.jsonl").status_code == 404
    exports = _entries_of(stack, "export.download", str(session_id))
    assert [e["details"] for e in exports] == [{"what": "archive", "bytes": 16}, {"what": "events", "events": 0}]
    [dataset_export] = _entries_of(stack, "export.download", str(dataset_id))
    assert dataset_export["details"] == {"what": "dataset_file", "file": "report.json", "bytes": 13}
    key_id = run_db(stack, "SELECT key_id FROM api_keys WHERE lookup_id = $1", auth.parse_key(reader).lookup_id)
    assert {e["actor_id"] for e in exports + [dataset_export]} == {str(key_id[0]["key_id"])}
    assert all(e["address"] is not None and e["request_id"] for e in exports + [dataset_export])
    _no_secret(stack, reader)


def test_a_role_given_or_changed_is_audited(stack: Any) -> None:
    people = People.from_settings(stack.settings)
    email = f"role-{uuid.uuid4().hex[:10]}@example.org"
    account_id = with_pool(stack, lambda pool: people.accounts.create_account(
        pool, email, PASSWORD, org_id=auth.DEFAULT_ORG_ID, workspace_id=auth.DEFAULT_WORKSPACE_ID,
        role="analyst", actor=Actor("cli", "test")))
    invitation = with_pool(stack, lambda pool: people.accounts.invite(
        pool, email, "reviewer", org_id=auth.DEFAULT_ORG_ID, workspace_id=auth.DEFAULT_WORKSPACE_ID,
        actor=Actor("key", "the-inviter"), address=None))
    with httpx.Client(base_url=stack.endpoint, timeout=30) as client:
        accepted = client.post("/v1/invitations/accept", json={"token": invitation["token"], "password": PASSWORD})
        assert accepted.status_code == 200, accepted.text
    changes = _entries_of(stack, "role.change", str(account_id))
    assert [e["details"] for e in changes] == [
        {"role": "analyst", "previous_role": None},
        {"role": "reviewer", "previous_role": "analyst", "granted_by": "key:the-inviter"},
    ]
    assert changes[1]["actor_id"] == str(account_id) and changes[1]["address"] is not None
    _no_secret(stack, invitation["token"], PASSWORD)


# ----------------------------------------------------------------------------- migration 0018

async def _members_scenario(dsn: str, before: Path) -> None:
    await apply_migrations(dsn, before)
    conn = await asyncpg.connect(dsn)
    try:
        org, other = uuid.uuid4(), uuid.uuid4()
        for o in (org, other):
            await conn.execute("INSERT INTO organizations (org_id, name) VALUES ($1, $2)", o, str(o))
        ws = await conn.fetchval("SELECT workspace_id FROM workspaces WHERE org_id = $1", org)
        other_ws = await conn.fetchval("SELECT workspace_id FROM workspaces WHERE org_id = $1", other)
        people = {}
        for name in ("kept", "nowhere", "crossed"):
            people[name] = await conn.fetchval(
                "INSERT INTO accounts (account_id, email, password_hash) VALUES ($1, $2, '$argon2id$x') RETURNING account_id",
                uuid.uuid4(), f"{name}@example.org")
        rows = {"kept": ws, "nowhere": uuid.uuid4(), "crossed": other_ws}
        for name, workspace in rows.items():
            await conn.execute("INSERT INTO memberships (account_id, org_id, workspace_id, role)"
                               " VALUES ($1, $2, $3, 'analyst')", people[name], org, workspace)
            await conn.execute("INSERT INTO invitations (invitation_id, token_hash, email, org_id, workspace_id, role,"
                               " invited_by, expires_at) VALUES ($1, $2, $3, $4, $5, 'analyst', 'x', now())",
                               uuid.uuid4(), uuid.uuid4().bytes * 2, f"{name}@example.org", org, workspace)
    finally:
        await conn.close()

    await apply_migrations(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        assert [r["account_id"] for r in await conn.fetch("SELECT account_id FROM memberships")] == [people["kept"]]
        assert [r["email"] for r in await conn.fetch("SELECT email FROM invitations")] == ["kept@example.org"]
        for workspace in (uuid.uuid4(), other_ws):  # unknown, or another organisation's
            with pytest.raises(asyncpg.ForeignKeyViolationError):
                await conn.execute("INSERT INTO memberships (account_id, org_id, workspace_id, role)"
                                   " VALUES ($1, $2, $3, 'analyst')", people["nowhere"], org, workspace)
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await conn.execute("INSERT INTO refresh_tokens (token_hash, family_id, account_id, workspace_id,"
                               " expires_at) VALUES ($1, $2, $3, $4, now())",
                               uuid.uuid4().bytes * 2, uuid.uuid4(), people["kept"], uuid.uuid4())
    finally:
        await conn.close()


def test_migration_0018_drops_rows_of_no_workspace_and_refuses_new_ones(stack: Any, tmp_path: Path) -> None:
    dsn = fresh_database(stack, "fk")
    asyncio.run(_members_scenario(dsn, migrations_until(tmp_path / "before", 17)))
