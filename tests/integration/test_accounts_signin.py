"""People sign in against the running stack: sign-in that does not tell emails apart, the refresh
cookie, rotation with reuse detection (random chains of refreshes and replays), sign-out, a
password change, invitations, the sign-in limits per account and per address, misused tokens,
and the audit trail with GET /v1/audit.

Every HTTP request here comes from 127.0.0.1, and the limit is 5 failed sign-ins per address in
15 minutes across the whole test run: this file makes at most 3 failed sign-ins over HTTP; the
per-address limit is exercised in-process with other addresses (the same code and database)."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
import uuid
from typing import Any

import asyncpg
import httpx
import jwt
import pytest

from actors.accounts.audit import Actor
from actors.accounts.people import People
from actors.auth import DEFAULT_ORG_ID, DEFAULT_WORKSPACE_ID
from actors.errors import RateLimited, Unauthenticated
from tests.support.databases import with_pool
from tests.support.stack import make_key, run_db

PASSWORD = "violet harbour lantern"


def _people(stack: Any) -> People:
    return People.from_settings(stack.settings)


def _in_db(stack: Any, work: Any) -> Any:
    return with_pool(stack, work)


def _account(stack: Any, role: str = "admin", password: str = PASSWORD) -> str:
    email = f"person-{uuid.uuid4().hex[:10]}@example.org"
    _in_db(stack, lambda pool: _people(stack).accounts.create_account(
        pool, email, password, org_id=DEFAULT_ORG_ID, workspace_id=DEFAULT_WORKSPACE_ID, role=role,
        actor=Actor("cli", "test")))
    return email


def _client(stack: Any) -> httpx.Client:
    # The refresh cookie is Secure: httpx keeps it for http://127.0.0.1 only when told the
    # origin is trustworthy, so the tests carry it by hand (as a browser would on localhost).
    return httpx.Client(base_url=stack.endpoint, timeout=30)


def _sign_in(client: httpx.Client, email: str, password: str = PASSWORD) -> httpx.Response:
    return client.post("/v1/auth/signin", json={"email": email, "password": password})


def _refresh_cookie(response: httpx.Response) -> str:
    header = response.headers["set-cookie"]
    assert header.startswith("tm_refresh=")
    return header.split(";", 1)[0].split("=", 1)[1]


def _refresh(client: httpx.Client, cookie: str) -> httpx.Response:
    return client.post("/v1/auth/refresh", headers={"Cookie": f"tm_refresh={cookie}"})


def _read(client: httpx.Client, token: str) -> int:
    """A read needing a valid credential: 404 (no such session) when it works, 401 when not."""
    return client.get(f"/v1/sessions/{uuid.uuid4()}", headers={"Authorization": f"Bearer {token}"}).status_code


def _audit(stack: Any, action: str) -> list[Any]:
    return run_db(stack, "SELECT * FROM audit_log WHERE action = $1 ORDER BY audit_id", action)


def test_sign_in_gives_an_access_token_that_works_and_a_strict_refresh_cookie(stack: Any) -> None:
    email = _account(stack)
    with _client(stack) as client:
        response = _sign_in(client, email.upper())  # emails are case-insensitive
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["token_type"] == "Bearer" and 900 <= body["expires_in"] <= 3600 and body["role"] == "admin"
        assert "refresh" not in response.text  # the refresh token is in the cookie only
        cookie = response.headers["set-cookie"].lower()
        for attribute in ("httponly", "secure", "samesite=strict", "path=/v1/auth/refresh"):
            assert attribute in cookie
        assert response.headers["cache-control"] == "no-store"
        assert _read(client, body["access_token"]) == 404
        me = client.get("/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"}).json()
        assert me["email"] == email and me["role"] == "admin"
        header = jwt.get_unverified_header(body["access_token"])
        assert header["alg"] == "HS256" and header["kid"] == "k1"
    entry = [e for e in _audit(stack, "signin.success") if e["actor_id"] == body["account_id"]][-1]
    assert entry["outcome"] == "success" and str(entry["address"]) == "127.0.0.1" and entry["request_id"]
    assert email not in str(dict(entry)) and PASSWORD not in str(dict(entry))


def test_a_wrong_password_and_an_unknown_email_get_the_same_answer(stack: Any) -> None:
    email = _account(stack)
    with _client(stack) as client:
        wrong = _sign_in(client, email, "not the password at all")
        unknown = _sign_in(client, f"nobody-{uuid.uuid4().hex}@example.org")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["error"]["code"] == unknown.json()["error"]["code"] == "invalid_credentials"
    assert wrong.json()["error"]["message"] == unknown.json()["error"]["message"]
    assert "set-cookie" not in wrong.headers
    failures = _audit(stack, "signin.failure")[-2:]
    assert [f["details"] for f in failures] == ['{"reason": "wrong password"}', '{"reason": "unknown email"}']
    assert all(f["subject"] and "@" not in f["subject"] for f in failures)


def test_misused_access_tokens_are_refused_in_the_one_error_shape(stack: Any) -> None:
    email = _account(stack, role="analyst")
    with _client(stack) as client:
        token = _sign_in(client, email).json()["access_token"]
        header, payload, signature = token.split(".")
        claims = jwt.decode(token, options={"verify_signature": False})
        bad = {
            "tampered": f"{header}.{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{signature}",
            "alg none": jwt.encode(claims, None, algorithm="none").rstrip(".") + ".",  # type: ignore[arg-type]
            "wrong kid": jwt.encode(claims, "x" * 40, algorithm="HS256", headers={"kid": "k-unknown"}),
            "expired": jwt.encode(claims | {"exp": int(time.time()) - 60}, "x" * 40, algorithm="HS256",
                                  headers={"kid": "k1"}),
            "other key": jwt.encode(claims | {"role": "owner"}, "y" * 40, algorithm="HS256", headers={"kid": "k1"}),
            "garbage": "not-a-token",
        }
        for name, value in bad.items():
            response = client.get(f"/v1/sessions/{uuid.uuid4()}", headers={"Authorization": f"Bearer {value}"})
            assert response.status_code == 401, name
            error = response.json()["error"]
            assert error["code"] == "unauthenticated" and error["request_id"], name
        # An analyst may read but not administer: 403 in the same shape.
        forbidden = client.get("/v1/audit", headers={"Authorization": f"Bearer {token}"})
        assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "forbidden"


def test_refresh_rotates_and_any_replay_revokes_the_family(stack: Any) -> None:
    """Random chains (seeded): refresh a few times, then present an earlier token again. The
    replay is refused, and so is every token of the family afterwards, the newest included."""
    rng = random.Random(17)
    email = _account(stack, role="reviewer")
    with _client(stack) as client:
        for _ in range(4):
            first = _sign_in(client, email)
            assert first.status_code == 200, first.text
            chain = [_refresh_cookie(first)]
            for _ in range(rng.randint(1, 4)):
                response = _refresh(client, chain[-1])
                assert response.status_code == 200, response.text
                assert _read(client, response.json()["access_token"]) == 404
                chain.append(_refresh_cookie(response))
            assert len(set(chain)) == len(chain)  # every refresh gives a new token
            replayed = rng.choice(chain[:-1])
            response = _refresh(client, replayed)
            assert response.status_code == 401 and response.json()["error"]["code"] == "unauthenticated"
            for token in chain:
                assert _refresh(client, token).status_code == 401
    reuse = _audit(stack, "token.reuse")
    assert len(reuse) >= 4 and reuse[-1]["outcome"] == "refused" and '"family_id"' in reuse[-1]["details"]


def test_sign_out_revokes_the_refresh_cookie(stack: Any) -> None:
    email = _account(stack)
    with _client(stack) as client:
        cookie = _refresh_cookie(_sign_in(client, email))
        out = client.delete("/v1/auth/refresh", headers={"Cookie": f"tm_refresh={cookie}"})
        assert out.status_code == 204 and "max-age=0" in out.headers["set-cookie"].lower()
        assert _refresh(client, cookie).status_code == 401
        assert client.delete("/v1/auth/refresh").status_code == 204  # harmless without a cookie


def test_a_password_change_revokes_sign_ins_and_access_tokens(stack: Any) -> None:
    email = _account(stack)
    new_password = "quiet meadow compass"
    with _client(stack) as client:
        signed = _sign_in(client, email)
        token, cookie = signed.json()["access_token"], _refresh_cookie(signed)
        auth = {"Authorization": f"Bearer {token}"}
        weak = client.post("/v1/auth/password", headers=auth,
                           json={"current_password": PASSWORD, "new_password": "password2024!"})
        assert weak.status_code == 422 and "password2024" not in weak.text
        changed = client.post("/v1/auth/password", headers=auth,
                              json={"current_password": PASSWORD, "new_password": new_password})
        assert changed.status_code == 204, changed.text
        assert _refresh(client, cookie).status_code == 401
        # Another ingress replica may remember the account's state for auth.cache_ttl_s (30 s).
        deadline = time.monotonic() + stack.settings.auth.cache_ttl_s + 5
        while _read(client, token) != 401:
            assert time.monotonic() < deadline, "the old access token still works"
            time.sleep(1)
        fresh = _sign_in(client, email, new_password)
        assert fresh.status_code == 200 and _read(client, fresh.json()["access_token"]) == 404
    assert _audit(stack, "password.change")


def test_an_admin_invites_and_the_invited_person_signs_in(stack: Any) -> None:
    admin_key = make_key(stack, ["admin"])
    email = f"invited-{uuid.uuid4().hex[:8]}@example.org"
    with _client(stack) as client:
        headers = {"Authorization": f"Bearer {admin_key}"}
        created = client.post("/v1/invitations", headers=headers, json={"email": email, "role": "reviewer"})
        assert created.status_code == 201, created.text
        invite = created.json()
        assert invite["token"].startswith("inv_") and invite["role"] == "reviewer"
        reader = client.post("/v1/invitations", headers={"Authorization": f"Bearer {make_key(stack, ['read'])}"},
                             json={"email": email, "role": "owner"})
        assert reader.status_code == 403
        common = client.post("/v1/invitations/accept", json={"token": invite["token"], "password": "qwerty123456"})
        assert common.status_code == 422
        accepted = client.post("/v1/invitations/accept", json={"token": invite["token"], "password": PASSWORD})
        assert accepted.status_code == 200 and accepted.json()["role"] == "reviewer"
        again = client.post("/v1/invitations/accept", json={"token": invite["token"], "password": PASSWORD})
        assert again.status_code == 404
        assert _sign_in(client, email).status_code == 200
    rows = run_db(stack, "SELECT password_hash FROM accounts WHERE email = $1", email)
    assert rows[0]["password_hash"].startswith("$argon2id$") and PASSWORD not in rows[0]["password_hash"]
    stored = run_db(stack, "SELECT token_hash = sha256(convert_to($1, 'UTF8')) AS hashed FROM invitations"
                           " WHERE invitation_id = $2", invite["token"], uuid.UUID(invite["invitation_id"]))
    assert stored[0]["hashed"]  # only the SHA-256 of the token is stored


def test_sign_in_limits_per_account_and_per_address(stack: Any) -> None:
    people = _people(stack)
    email = _account(stack)
    subject = people.accounts.subject_of(email)

    async def per_address(pool: asyncpg.Pool) -> None:
        address = f"203.0.113.{random.randint(1, 250)}"
        for attempt in range(5):
            with pytest.raises(Unauthenticated):
                await people.accounts.sign_in(pool, f"guess-{attempt}@example.org", "wrong guess here",
                                              address=address)
        with pytest.raises(RateLimited) as refused:
            await people.accounts.sign_in(pool, email, PASSWORD, address=address)  # the right one, too late
        assert 800 <= refused.value.retry_after_s <= 901
        signed = await people.accounts.sign_in(pool, email, PASSWORD, address="198.51.100.9")
        assert signed.role == "admin"

    _in_db(stack, per_address)

    target = _account(stack)  # a fresh account; each guess below from its own address

    async def concurrent_guesses(pool: asyncpg.Pool) -> list[str]:
        results = await asyncio.gather(*(
            people.accounts.sign_in(pool, target, f"concurrent guess {i}", address=f"192.0.2.{i + 1}")
            for i in range(12)), return_exceptions=True)
        return sorted(type(r).__name__ for r in results)

    # Guesses in flight together still get 5 checks: attempts on one account wait for each other.
    assert _in_db(stack, concurrent_guesses) == ["RateLimited"] * 7 + ["Unauthenticated"] * 5
    # Per account: five failures from elsewhere lock the account out for 127.0.0.1 as well.
    for _ in range(5):
        run_db(stack, "INSERT INTO audit_log (actor_kind, action, outcome, address, subject)"
                      " VALUES ('anonymous', 'signin.failure', 'failure', '100.64.9.9', $1)", subject)  # not a corpus IP's prefix
    with _client(stack) as client:
        locked = _sign_in(client, email)
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 800
    assert locked.json()["error"]["details"][0]["policy"] == "signin-failures"
    refused = _audit(stack, "signin.failure")[-1]
    assert refused["outcome"] == "refused" and refused["subject"] == subject


def test_audit_log_is_append_only_and_listed_for_admins(stack: Any) -> None:
    with pytest.raises(Exception, match="append-only"):
        run_db(stack, "UPDATE audit_log SET outcome = 'success'")
    with pytest.raises(Exception, match="append-only"):
        run_db(stack, "DELETE FROM audit_log")
    email = _account(stack)
    with _client(stack) as client:
        token = _sign_in(client, email).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        page = client.get("/v1/audit", headers=headers, params={"action": "signin.*", "limit": 2})
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["items"]) == 2 and body["next_cursor"] == body["items"][-1]["audit_id"]
        assert all(i["action"].startswith("signin.") for i in body["items"])
        older = client.get("/v1/audit", headers=headers, params={"action": "signin.*", "cursor": body["next_cursor"]})
        assert all(i["audit_id"] < body["next_cursor"] for i in older.json()["items"])
        bad = client.get("/v1/audit", headers=headers, params={"limit": 0, "colour": "red"})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_input"


def _tracemill(stack: Any, *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEMILL_")}
    env |= {"DATABASE_URL": stack.settings.database.url.get_secret_value(),
            "TRACEMILL_KEY_PEPPER": stack.settings.auth.pepper.get_secret_value()}
    done = subprocess.run([sys.executable, "-m", "cluster.cli", *argv], input=stdin, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def test_the_cli_makes_accounts_and_audits_key_changes(stack: Any) -> None:
    email = f"cli-{uuid.uuid4().hex[:8]}@example.org"
    made = _tracemill(stack, "accounts", "create", email, "--role", "analyst", "--password-stdin", stdin=PASSWORD + "\n")
    account_id = made.stdout.split()[2]
    assert email in _tracemill(stack, "accounts", "list").stdout
    with _client(stack) as client:
        assert _sign_in(client, email).json()["role"] == "analyst"
    created = _tracemill(stack, "keys", "create", "--role", "recorder", "--name", "audited").stdout
    key_id = created.split()[2]
    _tracemill(stack, "keys", "revoke", key_id)
    entries = run_db(stack, "SELECT action, actor_kind FROM audit_log WHERE target = $1 ORDER BY audit_id", key_id)
    assert [(e["action"], e["actor_kind"]) for e in entries] == [("key.create", "cli"), ("key.revoke", "cli")]
    assert run_db(stack, "SELECT 1 FROM audit_log WHERE action = 'account.create' AND target = $1", account_id)
