"""The exception tree pickles across processes; keys hash and scope; settings validate."""

import argparse
import hashlib
import pickle
import secrets
import uuid
from datetime import timedelta

import pytest

from actors import errors as E
from actors.auth import (KeyCache, Principal, check_key_strength, generate_key, hash_key, key_prefix, parse_key,
                         pepper_of)
from cluster.keys_cli import parse_duration, state_pepper
from configs.settings import AuthSettings, SettingsError, TracemillSettings, load_yaml


@pytest.mark.parametrize(
    "exc",
    [
        E.InvalidInput("bad", [{"index": 1, "seq": 1, "field": "seq", "error": "x"}]),
        E.SessionClosed("closed"),
        E.Conflict("taken", code="session_id_taken"),
        E.Overloaded("busy", retry_after_s=0.25),
        E.DependencyUnavailable("db down", retry_after_s=3.0, details=[{"dependency": "database"}]),
    ],
)
def test_errors_survive_pickling(exc: E.TracemillError) -> None:
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc)
    assert (back.message, back.details, back.code) == (exc.message, exc.details, exc.code)
    assert getattr(back, "retry_after_s", None) == getattr(exc, "retry_after_s", None)


PEPPER = b"a-test-pepper-of-at-least-32-characters"


def test_keys_hash_and_prefix() -> None:
    key = generate_key()
    parsed = parse_key(key)
    assert parsed is not None and key.startswith("tm_") and len(parsed.secret) >= 43
    # The printable part is the lookup id only: nothing of the secret.
    assert key_prefix(key) == f"tm_{parsed.lookup_id}" and parsed.secret[:4] not in key_prefix(key)
    assert len(hash_key(key, PEPPER)) == 32 and hash_key(key, PEPPER) != hash_key(generate_key(), PEPPER)
    # Keyed: the same key under another pepper, or unkeyed, gives another digest.
    assert hash_key(key, PEPPER) != hash_key(key, PEPPER + b"x")
    assert hash_key(key, PEPPER) != hashlib.sha256(key.encode()).digest()
    # The lookup id is drawn apart from the secret.
    assert len({parse_key(generate_key()).lookup_id for _ in range(100)}) == 100  # type: ignore[union-attr]


@pytest.mark.parametrize("key", [
    "tm_bootstrap_key_for_the_cli_test",              # the old test keys: no lookup id
    "tm_0123456789abcdef_short",                       # too short
    "tm_0123456789abcdef_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",  # no randomness
    "tm_0123456789abcdef_abababababababababababababababab",
    "tm_0123456789abcdef_bootstrapkeyforthecliteststhing",   # words: one character class
    "tm_0123456789abcdef_bootstrap_key_for_the_cli_test",
    "tm_0123456789ABCDEF_Zx8vQ2mL9pR4tY7wK3nB6cJ",    # lookup id not lower-case hex
    "tm_0123456789abcdef_Zx8vQ2mL9pR4tY7wK3nB6c+/",   # not url-safe
    "sk_0123456789abcdef_Zx8vQ2mL9pR4tY7wK3nB6cJ1",
])
def test_weak_or_malformed_bootstrap_keys_are_refused(key: str) -> None:
    with pytest.raises(E.InvalidInput) as info:
        check_key_strength(key, "TRACEMILL_BOOTSTRAP_API_KEY")
    assert "TRACEMILL_BOOTSTRAP_API_KEY" in str(info.value) and "tracemill keys generate" in str(info.value)


def test_generated_keys_pass_the_strength_check() -> None:
    for _ in range(200):
        check_key_strength(generate_key())
        check_key_strength(f"tm_0123456789abcdef_{secrets.token_urlsafe(17)}")  # 23 characters
    check_key_strength("tm_0123456789abcdef_Zx8vQ2mL9pR4tY7wK3nB6cJ1dF5")  # 27 mixed characters


def test_the_pepper_is_required_to_check_keys_and_never_shown(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(E.ConfigError, match="TRACEMILL_KEY_PEPPER"):
        pepper_of(AuthSettings())
    with pytest.raises(SettingsError, match="auth.pepper"):
        TracemillSettings.build({"database": {"url": "x"}, "object_store": {"kind": "local", "local_dir": "/t"},
                                 "auth": {"pepper": "short"}})
    secret = tmp_path / "pepper"
    secret.write_text("p" * 40 + "\n")
    s = TracemillSettings.from_env({"DATABASE_URL": "postgresql:///x", "TRACEMILL_KEY_PEPPER_FILE": str(secret)},
                                   {"object_store": {"kind": "local", "local_dir": str(tmp_path)}})
    assert pepper_of(s.auth) == b"p" * 40 and "pppp" not in repr(s) and "pppp" not in s.model_dump_json()
    with pytest.raises(SettingsError, match="TRACEMILL_KEY_PEPPER_FILE"):
        TracemillSettings.from_env({"TRACEMILL_KEY_PEPPER_FILE": str(tmp_path / "missing")})


def test_the_local_pepper_is_made_once_and_private(tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = state_pepper(tmp_path)
    assert len(first) >= 32 and state_pepper(tmp_path) == first
    assert (tmp_path / "key_pepper").stat().st_mode & 0o777 == 0o600
    (tmp_path / "key_pepper").chmod(0o644)
    with pytest.raises(SettingsError, match="chmod 600"):
        state_pepper(tmp_path)


def test_durations() -> None:
    assert parse_duration("24h") == timedelta(hours=24) and parse_duration("90d") == timedelta(days=90)
    assert parse_duration("2s") == timedelta(seconds=2)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration("1 week")


def test_admin_role_is_a_superset_of_the_client_roles() -> None:
    reader = Principal(uuid.uuid4(), uuid.uuid4(), role="analyst")
    reader.require("sessions.read")
    with pytest.raises(E.Forbidden):
        reader.require("sessions.write")
    Principal(uuid.uuid4(), uuid.uuid4(), role="admin").require("sessions.write")


def test_key_cache_refuses_missing_key_without_a_database() -> None:
    import asyncio

    with pytest.raises(E.Unauthenticated):
        asyncio.run(KeyCache(ttl_s=30, pepper=PEPPER).authenticate(None, None))  # type: ignore[arg-type]


def test_settings_from_env_and_overrides(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {"DATABASE_URL": "postgresql://u:secret@db/x", "TRACEMILL_S3_BUCKET": "b", "AWS_REGION": "eu-west-1",
           "AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "TRACEMILL_SHARDS": "8"}
    s = TracemillSettings.from_env(env)
    assert s.object_store.kind == "s3" and s.object_store.endpoint_url == "http://127.0.0.1:9000"
    assert s.shards.count == 8 and "secret" not in repr(s)
    assert s.to_args()["database"]["url"] == "postgresql://u:secret@db/x"
    local = TracemillSettings.from_env({}, {"database": {"url": "postgresql:///x"},
                                             "object_store": {"kind": "local", "local_dir": str(tmp_path)}})
    assert local.object_store.local_dir == tmp_path


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"object_store": {"kind": "local"}}, "database"),
        ({"database": {"url": "x"}, "object_store": {"kind": "s3"}}, "bucket"),
        ({"database": {"url": "x"}, "object_store": {"kind": "local", "local_dir": "/t"}, "shards": {"count": 0}}, "shards.count"),
        ({"database": {"url": "x"}, "object_store": {"kind": "local", "local_dir": "/t"}, "typo": 1}, "typo"),
    ],
)
def test_bad_settings_name_the_problem(data: dict, fragment: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(SettingsError) as info:
        TracemillSettings.build(data)
    assert fragment in str(info.value)


def test_yaml_errors_name_the_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2")
    with pytest.raises(SettingsError, match="bad.yaml"):
        load_yaml(bad)
    with pytest.raises(SettingsError, match="not found"):
        load_yaml(tmp_path / "missing.yaml")
