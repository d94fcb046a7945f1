"""The exception tree pickles across processes; keys hash and scope; settings validate."""

import pickle
import uuid

import pytest

from actors import errors as E
from actors.auth import KeyCache, Principal, generate_key, hash_key, key_prefix
from configs.settings import SettingsError, TracemillSettings, load_yaml


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


def test_keys_hash_and_prefix() -> None:
    key = generate_key()
    assert key.startswith("tm_") and len(key) > 40
    assert key_prefix(key) == key[:12] and len(hash_key(key)) == 32
    assert hash_key(key) != hash_key(generate_key())


def test_admin_scope_is_a_superset() -> None:
    reader = Principal(uuid.uuid4(), uuid.uuid4(), frozenset({"read"}))
    reader.require("read")
    with pytest.raises(E.Forbidden):
        reader.require("ingest")
    Principal(uuid.uuid4(), uuid.uuid4(), frozenset({"admin"})).require("ingest")


def test_key_cache_refuses_missing_key_without_a_database() -> None:
    import asyncio

    with pytest.raises(E.Unauthenticated):
        asyncio.run(KeyCache(ttl_s=30).authenticate(None, None))  # type: ignore[arg-type]


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
