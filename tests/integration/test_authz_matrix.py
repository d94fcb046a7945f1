"""Authorisation, generated from the app's own routes: every route (from `api.routes`) × every
role × the caller's own workspace and another one of the same organisation.

- a role lacking the route's permission gets 403 `forbidden`, whatever the ids;
- a role holding it gets 404 `not_found` for any id of the other workspace, and never 401/403
  (or a 5xx) for its own;
- a list answered 200 names nothing of the other workspace;
- a recorder key writes only to the sessions it recorded: another recorder's session is 404.
A route missing from serve_app/permissions_table.py fails here (and in tests/unit/test_permissions.py).
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest
from PIL import Image
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from actors import auth
from actors.permissions import ALL_ROLES, permissions_of
from serve_app.permissions_table import ROUTE_PERMISSIONS, app_routes

pytestmark = pytest.mark.integration

_PARAM = re.compile(r"{(\w+)}")
# Org-level by design: an organisation's workspaces (and its audit log) are an admin's in any workspace.
_ORG_LEVEL = {("GET", "/v1/workspaces"), ("GET", "/v1/orgs"), ("GET", "/v1/audit")}
# Valid bodies where a handler reads the body before it looks the id up (else {}).
_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/sessions/{session_id}/flags"): {"reason": "other"},
    ("PATCH", "/v1/flags/{flag_id}"): {"state": "reviewed"},
}


@dataclass
class World:
    org_id: uuid.UUID
    own: uuid.UUID
    other: uuid.UUID
    keys: dict[str, str] = field(default_factory=dict)  # role -> key in the own workspace
    ids: dict[str, tuple[str, str]] = field(default_factory=dict)  # path param -> (own id, other id)
    # Own-workspace ids the DELETE routes take instead, so a delete spoils nothing the other routes read.
    spare: dict[str, str] = field(default_factory=dict)


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), (30, 120, 200)).save(out, "PNG")
    return out.getvalue()


async def _setup(stack: Any) -> World:
    pepper = auth.pepper_of(stack.settings.auth)
    conn = await asyncpg.connect(stack.settings.database.url.get_secret_value())
    try:
        org = uuid.uuid4()
        await conn.execute("INSERT INTO organizations (org_id, name) VALUES ($1, $2)", org, f"authz-{org}")
        own = await conn.fetchval("SELECT workspace_id FROM workspaces WHERE org_id = $1 AND is_default", org)
        other = await conn.fetchval("INSERT INTO workspaces (workspace_id, org_id, name) VALUES ($1, $2, 'other')"
                                    " RETURNING workspace_id", uuid.uuid4(), org)
        world = World(org, own, other)
        for role in ALL_ROLES:
            world.keys[role] = (await auth.create_key(conn, role=role, org_id=org, workspace_id=own,
                                                      name=f"authz-{role}", pepper=pepper))[1]
        world.keys["other_admin"] = (await auth.create_key(conn, role="admin", org_id=org, workspace_id=other,
                                                           name="authz-other", pepper=pepper))[1]
        world.keys["second_recorder"] = (await auth.create_key(conn, role="recorder", org_id=org, workspace_id=own,
                                                               name="authz-rec2", pepper=pepper))[1]
        return world
    finally:
        await conn.close()


async def _training_rows(stack: Any, world: World, sessions: dict[uuid.UUID, str]) -> None:
    """A succeeded dataset, fine-tune and local model, and a flag, in each workspace (rows only:
    no job runs for them)."""
    conn = await asyncpg.connect(stack.settings.database.url.get_secret_value())
    try:
        for workspace in (world.own, world.other):
            ds, ft, model, flag = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
            await conn.execute(
                "INSERT INTO datasets (dataset_id, org_id, workspace_id, name, status, config, code_version, files)"
                " VALUES ($1, $2, $3, 'authz', 'succeeded', '{}', 'test', '{}')", ds, world.org_id, workspace)
            await conn.execute(
                "INSERT INTO finetunes (finetune_id, org_id, dataset_id, provider, base_model, settings, status)"
                " VALUES ($1, $2, $3, 'local', 'base', '{}', 'succeeded')", ft, world.org_id, ds)
            await conn.execute(
                "INSERT INTO models (model_id, org_id, name, version, provider, base_model, finetune_id, dataset_id,"
                " metrics) VALUES ($1, $2, $3, $4, 'local', 'base', $5, $6, '{}')",
                model, world.org_id, f"authz-{model}", 1 if workspace == world.own else 2, ft, ds)
            if await conn.fetchval("SELECT to_regclass('review_flags') IS NOT NULL"):
                await conn.execute(
                    "INSERT INTO review_flags (flag_id, org_id, session_id, reason, created_by)"
                    " VALUES ($1, $2, $3, 'other', $4)", flag, world.org_id,
                    next(s for s, w in sessions.items() if w == ("own" if workspace == world.own else "other")), flag)
            side = 0 if workspace == world.own else 1
            recorder = await conn.fetchval(
                "INSERT INTO recorders (recorder_id, org_id, workspace_id, name) VALUES ($1, $2, $3, 'authz')"
                " RETURNING recorder_id", uuid.uuid4(), world.org_id, workspace)
            if side == 0:
                world.spare["recorder_id"] = str(await conn.fetchval(
                    "INSERT INTO recorders (recorder_id, org_id, workspace_id, name) VALUES ($1, $2, $3, 'spare')"
                    " RETURNING recorder_id", uuid.uuid4(), world.org_id, workspace))
            export = await conn.fetchval(  # a queued export's row (no job runs for it)
                "INSERT INTO exports (export_id, org_id, workspace_id, recorder_id, requested_by)"
                " VALUES ($1, $2, $3, $4, 'authz') RETURNING export_id", uuid.uuid4(), world.org_id, workspace, recorder)
            for name, value in (("dataset_id", ds), ("finetune_id", ft), ("model_id", model), ("flag_id", flag),
                                ("recorder_id", recorder), ("export_id", export)):
                pair = list(world.ids.get(name, ("", "")))
                pair[side] = str(value)
                world.ids[name] = (pair[0], pair[1])
    finally:
        await conn.close()


def _client(stack: Any, key: str) -> httpx.Client:
    return httpx.Client(base_url=stack.endpoint, timeout=60, headers={"Authorization": f"Bearer {key}"})


@pytest.fixture(scope="module")
def world(stack: Any) -> World:
    world = asyncio.run(_setup(stack))
    sessions: dict[uuid.UUID, str] = {}
    for side, key in (("own", world.keys["recorder"]), ("other", world.keys["other_admin"])):
        with _client(stack, key) as http:
            created = http.post("/v1/sessions", json={"type": "automated", "task": f"authz {side}"})
            assert created.status_code == 201, created.text
            sid = created.json()["session_id"]
            shot = http.put(f"/v1/sessions/{sid}/screenshots/s1", content=_png(), headers={"Content-Type": "image/png"})
            assert shot.status_code == 201, shot.text
        sessions[uuid.UUID(sid)] = side
    own_sid, other_sid = (str(s) for s, side in sorted(sessions.items(), key=lambda kv: kv[1] != "own"))
    world.ids = {"session_id": (own_sid, other_sid), "screenshot_id": ("s1", "s1"), "name": ("report.json",) * 2,
                 "workspace_id": (str(world.own), str(world.other))}
    with _client(stack, world.keys["recorder"]) as http:
        world.spare["session_id"] = http.post("/v1/sessions", json={"type": "automated"}).json()["session_id"]
    asyncio.run(_training_rows(stack, world, sessions))
    return world


def _path(template: str, world: World, side: int, method: str = "GET") -> str:
    if method == "DELETE" and side == 0:
        return _PARAM.sub(lambda m: world.spare[m[1]], template)
    return _PARAM.sub(lambda m: world.ids[m[1]][side], template)


def _call(http: httpx.Client, method: str, path: str, template: str = "") -> httpx.Response:
    """The answer, its body read unless it is an event stream (GET /v1/live never ends)."""
    body = {"json": _BODIES.get((method, template), {})} if method in ("POST", "PUT", "PATCH") else {}
    with http.stream(method, path, **body) as response:  # type: ignore[arg-type]
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            response.read()
        return response


def _error_code(response: httpx.Response) -> str:
    body = response.json()
    assert set(body["error"]) >= {"code", "message", "details", "request_id"}, body  # the usual shape
    return str(body["error"]["code"])


def _http_routes() -> list[tuple[str, str]]:
    from serve_app.ingress import api

    routes = sorted(set(app_routes(api.routes)))
    missing = [r for r in routes if r not in ROUTE_PERMISSIONS]
    assert not missing, f"routes without a rule in serve_app/permissions_table.py: {missing}"
    return [r for r in routes if ROUTE_PERMISSIONS[r] is not None and r[0] != "WS"]


@pytest.mark.parametrize("role", ALL_ROLES)
def test_every_route_for_every_role_in_own_and_other_workspace(stack: Any, world: World, role: str) -> None:
    failures: list[str] = []
    other_ids = {w[1] for w in world.ids.values() if w[1] not in ("s1", "report.json")}
    with _client(stack, world.keys[role]) as http:
        for method, template in _http_routes():
            permission = ROUTE_PERMISSIONS[(method, template)]
            allowed = permission in permissions_of(role)  # type: ignore[operator]
            has_ids = bool(_PARAM.search(template))
            for side in (1, 0) if has_ids else (0,):
                got = _call(http, method, _path(template, world, side, method), template)
                where = f"{role} {method} {template} ({'other' if side else 'own'} workspace): {got.status_code}"
                if not allowed:
                    if got.status_code != 403 or _error_code(got) != "forbidden":
                        failures.append(f"{where}, expected 403 forbidden; {got.text[:200]}")
                elif side == 1:
                    if got.status_code != 404 or _error_code(got) != "not_found":
                        failures.append(f"{where}, expected 404 not_found; {got.text[:200]}")
                elif got.status_code in (401, 403) or got.status_code >= 500:
                    failures.append(f"{where}, expected the route to be allowed; {got.text[:200]}")
                elif (method, template) not in _ORG_LEVEL and got.status_code == 200 and got.is_stream_consumed and \
                        any(i in got.text for i in other_ids):
                    failures.append(f"{where}, the answer names another workspace's id")
    assert not failures, "\n".join(failures)


def _ws_close(stack: Any, key: str, session_id: str) -> int:
    url = stack.endpoint.replace("http://", "ws://") + f"/v1/sessions/{session_id}/stream"
    with connect(url, open_timeout=10) as ws:
        ws.send(json.dumps({"type": "auth", "api_key": key}))
        try:
            ws.recv(timeout=3)
            ws.recv(timeout=3)
        except (ConnectionClosed, TimeoutError):
            pass
        return ws.close_code or 0


@pytest.mark.parametrize("role", ALL_ROLES)
def test_the_stream_route_for_every_role(stack: Any, world: World, role: str) -> None:
    allowed = ROUTE_PERMISSIONS[("WS", "/v1/sessions/{session_id}/stream")] in permissions_of(role)  # type: ignore[operator]
    other = _ws_close(stack, world.keys[role], world.ids["session_id"][1])
    assert other == (4404 if allowed else 4403)
    own = _ws_close(stack, world.keys[role], world.ids["session_id"][0])
    assert (own not in (4401, 4403, 4404)) if allowed else own == 4403


def test_a_recorder_writes_only_to_the_sessions_it_recorded(stack: Any, world: World) -> None:
    own_sid = world.ids["session_id"][0]  # recorded by the "recorder" key
    with _client(stack, world.keys["second_recorder"]) as http:
        for method, path in (("POST", f"/v1/sessions/{own_sid}/events"), ("POST", f"/v1/sessions/{own_sid}/finish"),
                             ("PUT", f"/v1/sessions/{own_sid}/screenshots/s2")):
            got = _call(http, method, path)
            assert got.status_code == 404 and _error_code(got) == "not_found", (method, path, got.text)
    # The stream is a write path too: another recorder of the same workspace is refused before it records.
    assert _ws_close(stack, world.keys["second_recorder"], own_sid) == 4404
    with _client(stack, world.keys["analyst"]) as http:  # the workspace's analyst sees it
        assert http.get(f"/v1/sessions/{own_sid}").status_code == 200


def test_admins_make_workspaces_and_keys_but_never_more_than_they_hold(stack: Any, world: World) -> None:
    with _client(stack, world.keys["admin"]) as admin, _client(stack, world.keys["owner"]) as owner:
        made = admin.post("/v1/workspaces", json={"name": f"team-{uuid.uuid4().hex[:6]}"})
        assert made.status_code == 201, made.text
        team = made.json()["workspace_id"]
        assert team in admin.get("/v1/workspaces").text
        assert admin.post("/v1/workspaces", json={"name": made.json()["name"]}).status_code == 409
        refused = admin.post("/v1/keys", json={"role": "owner"})  # more than an admin holds
        assert refused.status_code == 403 and _error_code(refused) == "forbidden"
        elsewhere = admin.post("/v1/keys", json={"role": "recorder", "workspace_id": team})
        assert elsewhere.status_code == 403  # only an owner makes keys for another workspace
        key = owner.post("/v1/keys", json={"role": "recorder", "workspace_id": team, "recorder": "alice"})
        assert key.status_code == 201, key.text
        assert key.json()["workspace_id"] == team and key.json()["recorder_id"]
        listed = admin.get("/v1/keys").json()["items"]
        assert key.json()["key_id"] not in {k["key_id"] for k in listed}  # another workspace's key
        org = owner.post("/v1/orgs", json={"name": f"org-{uuid.uuid4().hex[:6]}"})
        assert org.status_code == 201 and org.json()["owner_key"]["key"].startswith("tm_")
    # The new key records into its workspace; the first workspace's admin cannot see the session.
    with _client(stack, key.json()["key"]) as alice:
        # A recorder's key records once its recorder agreed to the workspace's notice (issue 18.1).
        notice = alice.get("/v1/consent/notice").json()["version"]
        assert alice.post("/v1/consent", json={"version": notice}).status_code == 201
        sid = alice.post("/v1/sessions", json={"type": "human"}).json()["session_id"]
        assert alice.get(f"/v1/sessions/{sid}").status_code == 403  # a recorder reads nothing
    with _client(stack, world.keys["admin"]) as admin:
        assert admin.get(f"/v1/sessions/{sid}").status_code == 404
    recorder = asyncio.run(_fetch(stack, "SELECT created_by_key, recorder_id, workspace_id FROM sessions"
                                         " WHERE session_id = $1", uuid.UUID(sid)))
    assert str(recorder["created_by_key"]) == key.json()["key_id"]
    assert str(recorder["recorder_id"]) == key.json()["recorder_id"] and str(recorder["workspace_id"]) == team


async def _fetch(stack: Any, query: str, *args: Any) -> Any:
    conn = await asyncpg.connect(stack.settings.database.url.get_secret_value())
    try:
        return await conn.fetchrow(query, *args)
    finally:
        await conn.close()
