"""API keys against the running stack: what a database dump holds, expiry, rotation's overlap,
and the old-format rows migration 0006 invalidates."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from actors import auth
from actors.accounts.tokens import UNKNOWN_CREDENTIAL
from actors.storage.postgres import apply_migrations
from tests.support.stack import run_db


def _with_pool(stack: Any, work: Any) -> Any:
    async def go() -> Any:
        pool = await asyncpg.create_pool(stack.settings.database.url.get_secret_value(), min_size=0, max_size=1)
        try:
            return await work(pool)
        finally:
            await pool.close()

    return asyncio.run(go())


def _pepper(stack: Any) -> bytes:
    return auth.pepper_of(stack.settings.auth)


def _new_key(stack: Any, expires_in: timedelta | None = None) -> tuple[uuid.UUID, str]:
    return _with_pool(stack, lambda pool: auth.create_key(pool, scopes=["read"], name="keys-test",
                                                          pepper=_pepper(stack), expires_in=expires_in))


def _status(stack: Any, key: str) -> httpx.Response:
    """A read that needs a valid key: 404 (no such session) when the key works, 401 when not."""
    return httpx.get(f"{stack.endpoint}/v1/sessions/{uuid.uuid4()}",
                     headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _pg_dump(stack: Any) -> str:
    import pgserver

    pg_dump = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_dump"
    dsn = stack.settings.database.url.get_secret_value()
    done = subprocess.run([str(pg_dump), "--data-only", "--table=api_keys", f"--dbname={dsn}"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_database_dump_holds_no_key_material(stack: Any) -> None:
    key_id, key = _new_key(stack)
    assert _status(stack, key).status_code == 404
    secret = auth.parse_key(key).secret  # type: ignore[union-attr]
    dump = _pg_dump(stack)
    assert str(key_id) in dump and auth.key_prefix(key)[3:] in dump  # the row is there: id and lookup id
    for start in range(len(secret) - 6):  # not a 6-character piece of the secret
        assert secret[start:start + 6] not in dump
    # Neither an unkeyed hash of the key (what a dump used to make guessable) …
    assert hashlib.sha256(key.encode()).hexdigest() not in dump
    row = run_db(stack, "SELECT * FROM api_keys WHERE key_id = $1", key_id)[0]
    assert set(dict(row)) == {"key_id", "org_id", "name", "lookup_id", "key_hmac", "scopes", "created_at",
                              "revoked_at", "expires_at", "replaced_by", "workspace_id", "role", "recorder_id"}
    # … only the HMAC under the pepper, which lives in the settings, not in the database.
    assert bytes(row["key_hmac"]) == hmac_of(key, _pepper(stack))
    assert _pepper(stack).decode() not in dump


def hmac_of(key: str, pepper: bytes) -> bytes:
    import hmac

    return hmac.new(pepper, key.encode(), hashlib.sha256).digest()


def test_a_key_with_a_wrong_secret_or_unknown_form_is_refused(stack: Any) -> None:
    _, key = _new_key(stack)
    lookup = auth.key_prefix(key)
    forged = f"{lookup}_{auth.generate_key().rsplit('_', 1)[1]}"  # right lookup id, wrong secret
    for bad in (forged, key[:-1], "tm_" + "x" * 40):
        answer = _status(stack, bad)
        assert answer.status_code == 401 and answer.json()["error"]["message"] == "unknown API key", bad
    # Neither a key nor a JWT: the message names both forms. A JWT-shaped one is an access token.
    for bad in (key.replace("tm_", "sk_"), "hunter2"):
        answer = _status(stack, bad)
        assert answer.status_code == 401 and answer.json()["error"]["message"] == UNKNOWN_CREDENTIAL, bad
    answer = _status(stack, "eyJhbGciOiJIUzI1NiJ9.e30.c2ln")
    assert answer.status_code == 401 and answer.json()["error"]["message"] == "invalid access token"


def test_an_expired_key_is_refused(stack: Any) -> None:
    _, key = _new_key(stack, expires_in=timedelta(seconds=3))
    assert _status(stack, key).status_code == 404  # works, and is now in the replica's key cache
    time.sleep(3.5)
    answer = _status(stack, key)
    assert answer.status_code == 401 and "expired" in answer.json()["error"]["message"]


def test_rotation_keeps_the_old_key_working_for_the_overlap_only(stack: Any) -> None:
    key_id, old = _new_key(stack)
    done = _with_pool(stack, lambda pool: auth.rotate_key(pool, str(key_id), overlap=timedelta(seconds=4),
                                                          pepper=_pepper(stack)))
    assert done.old_key_id == key_id and done.new_key != old
    assert _status(stack, old).status_code == 404 and _status(stack, done.new_key).status_code == 404
    rows = run_db(stack, "SELECT key_id, org_id, name, scopes, replaced_by FROM api_keys WHERE key_id = ANY($1)",
                  [key_id, done.new_key_id])
    by_id = {r["key_id"]: r for r in rows}
    assert by_id[key_id]["replaced_by"] == done.new_key_id
    assert (by_id[key_id]["org_id"], by_id[key_id]["scopes"], by_id[key_id]["name"]) == \
           (by_id[done.new_key_id]["org_id"], by_id[done.new_key_id]["scopes"], by_id[done.new_key_id]["name"])
    time.sleep(4.5)
    answer = _status(stack, old)
    assert answer.status_code == 401 and "expired" in answer.json()["error"]["message"]
    assert _status(stack, done.new_key).status_code == 404


def test_rotation_refuses_what_it_cannot_rotate(stack: Any) -> None:
    from actors.errors import Conflict, InvalidInput, NotFound

    key_id, _ = _new_key(stack)
    rotate = lambda ref, overlap=timedelta(hours=1): _with_pool(  # noqa: E731
        stack, lambda pool: auth.rotate_key(pool, ref, overlap=overlap, pepper=_pepper(stack)))
    with pytest.raises(InvalidInput):
        rotate(str(key_id), timedelta(seconds=-1))
    rotate(str(key_id))
    with pytest.raises(Conflict, match="already rotated"):
        rotate(str(key_id))
    with pytest.raises(NotFound):
        rotate("tm_0000000000000000")
    with pytest.raises(NotFound):
        rotate(str(uuid.uuid4()))


@pytest.fixture()
def fresh_dsn(stack: Any) -> str:
    name = f"keys_{uuid.uuid4().hex[:12]}"
    run_db(stack, f'CREATE DATABASE "{name}"')
    parts = urlsplit(stack.settings.database.url.get_secret_value())
    return urlunsplit(parts._replace(path=f"/{name}"))


def test_migration_0006_invalidates_old_format_keys_and_erases_their_material(fresh_dsn: str,
                                                                              tmp_path: Path) -> None:
    from actors.storage.postgres import _migration_files

    before = tmp_path / "before"
    before.mkdir()
    for version, name, sql in _migration_files():
        if version < 6:
            (before / name).write_text(sql)
    asyncio.run(apply_migrations(fresh_dsn, before))
    old_key = "tm_" + "Q" * 13  # a 16-character bootstrap key, as they were allowed to be

    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(fresh_dsn)
        try:
            await conn.execute(
                "INSERT INTO api_keys (key_id, org_id, name, prefix, key_hash, scopes) VALUES ($1, $2, 'bootstrap',"
                " $3, $4, ARRAY['admin'])", uuid.uuid4(), auth.DEFAULT_ORG_ID, old_key[:12],
                hashlib.sha256(old_key.encode()).digest())
            assert "0006_key_security.sql" in await apply_migrations(fresh_dsn)
            return list(await conn.fetch("SELECT * FROM api_keys"))
        finally:
            await conn.close()

    rows = asyncio.run(go())
    assert len(rows) == 1 and rows[0]["revoked_at"] is not None and rows[0]["lookup_id"] is None
    assert "prefix" not in dict(rows[0]) and "key_hash" not in dict(rows[0])
