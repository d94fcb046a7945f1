"""Secrets stay out of what Ray shows (Serve args, the KV store), reach a process through its
environment, and the shards' generation is keyed by the settings that are not secret."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import uuid
from pathlib import Path

import pytest
import yaml

from actors.errors import Overloaded
from actors.ingest.session_state import SessionState
from actors.ingest.shard import SessionShard
from actors.ingest.shard_pool import ManagedShard, shard_fingerprint, shard_name
from configs.secrets import SECRETS_FILE_ENV, read_secrets_file, write_secrets_file
from configs.settings import CONFIG_DIR, SettingsError, TracemillSettings

DSN = "postgresql://tm:PLANTED-PASSWORD-1f2e@db.example/tracemill"
KEY = "sk-PLANTED-OPENAI-KEY-9d8c"
PEPPER = "PLANTED-PEPPER-" + "p" * 32
ENV = {"DATABASE_URL": DSN, "OPENAI_API_KEY": KEY, "TRACEMILL_KEY_PEPPER": PEPPER}


def settings(tmp_path: Path, **env: str) -> TracemillSettings:
    return TracemillSettings.from_env(ENV | env, {"object_store": {"kind": "local", "local_dir": str(tmp_path)}})


def test_public_args_hold_no_secret_and_the_secrets_come_back(tmp_path: Path) -> None:
    full = settings(tmp_path)
    public = full.public_args()
    text = json.dumps(public)
    assert not [s for s in ("PLANTED", "p" * 32) if s in text], text
    # Found by type: the key pepper too, where the settings have one.
    assert {"database.url", "processing.vision.api_key", "finetune.api_key"} <= set(full.secret_values())
    assert TracemillSettings.with_secrets(public, ENV) == full  # a KubeRay pod: its own environment
    path = write_secrets_file(tmp_path / "s" / "secrets.json", full.secret_values())
    assert TracemillSettings.with_secrets(public, {SECRETS_FILE_ENV: str(path)}) == full
    assert TracemillSettings.with_secrets(public, {}, secrets_file=str(path)) == full  # a job driver
    assert full.to_args()["database"]["url"] == DSN


def test_the_named_file_wins_over_the_environment_and_a_missing_one_is_explained(tmp_path: Path) -> None:
    full = settings(tmp_path)
    path = write_secrets_file(tmp_path / "secrets.json", full.secret_values())
    other = ENV | {"DATABASE_URL": "postgresql://someone:else@db/x", SECRETS_FILE_ENV: str(path)}
    assert TracemillSettings.with_secrets(full.public_args(), other).database.url.get_secret_value() == DSN
    with pytest.raises(SettingsError, match="not on this node"):
        TracemillSettings.with_secrets(full.public_args(), {SECRETS_FILE_ENV: str(tmp_path / "elsewhere.json")})


def test_secrets_file_is_private_from_the_start_and_a_readable_one_is_refused(tmp_path: Path) -> None:
    stale = tmp_path / "secrets.json"
    stale.write_text("{}")
    stale.chmod(0o644)
    path = write_secrets_file(stale, {"database.url": DSN})
    assert (os.stat(path).st_mode & 0o777) == 0o600
    assert read_secrets_file(path) == {"database.url": DSN}
    path.chmod(0o640)
    with pytest.raises(SettingsError, match="make it 600"):
        read_secrets_file(path)
    path.chmod(0o600)
    path.write_text("[1]")
    with pytest.raises(SettingsError, match="not a tracemill secrets file"):
        read_secrets_file(path)


def test_the_shipped_serve_config_and_ingress_carry_no_options_of_their_own() -> None:
    """Deployment options live in configs/serve.yaml only; the class sets none."""
    from serve_app.ingress import Ingress

    [app] = yaml.safe_load((CONFIG_DIR / "serve.yaml").read_text())["applications"]
    assert app["args"] == {}
    [ingress] = [d for d in app["deployments"] if d["name"] == "Ingress"]
    assert {"max_ongoing_requests", "autoscaling_config", "health_check_period_s"} <= set(ingress)
    assert Ingress._deployment_config.user_configured_option_names <= {"name"}


def test_a_generation_is_keyed_by_the_public_settings(tmp_path: Path) -> None:
    base = settings(tmp_path)
    same_but_secrets = settings(tmp_path, DATABASE_URL="postgresql://tm:rotated@db.example/tracemill")
    more_shards = settings(tmp_path, TRACEMILL_SHARDS="7")
    assert shard_fingerprint(base) == shard_fingerprint(same_but_secrets)
    assert shard_fingerprint(base) != shard_fingerprint(more_shards)
    # Ingress-only sections redeploy the replicas but keep the shards.
    tighter = base.model_copy(update={"limits": base.limits.model_copy(update={"trusted_proxies": ("10.0.0.1",)})})
    assert tighter.public_args() != base.public_args()
    assert shard_fingerprint(tighter) == shard_fingerprint(base)
    rebuilt = TracemillSettings.with_secrets(base.public_args(), ENV)
    assert shard_name(rebuilt, 3) == shard_name(base, 3) == f"session-shard-{shard_fingerprint(base)}-3"


def test_every_public_shard_method_passes_the_drain_gate() -> None:
    public = [n for n, _ in inspect.getmembers(SessionShard, inspect.iscoroutinefunction) if not n.startswith("_")]
    assert {"ingest", "create_session", "finish"} <= set(public)
    for name in public:
        gated = getattr(ManagedShard, name) is not getattr(SessionShard, name)
        assert gated == (name not in ("ping", "check_health", "call")), name


def test_a_draining_shard_refuses_new_work_and_reopens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    full = settings(tmp_path)
    path = write_secrets_file(tmp_path / "secrets.json", full.secret_values())
    monkeypatch.setenv(SECRETS_FILE_ENV, str(path))

    async def go() -> None:
        shard = ManagedShard(0, full.public_args())
        assert shard._settings == full  # the secrets came from the file, not the arguments
        org, sid = uuid.uuid4(), uuid.uuid4()
        shard._remember(SessionState(sid, org, "recording"))
        await shard.check_recording(org, sid)
        await shard.drain(timeout_s=5)
        with pytest.raises(Overloaded, match="being replaced"):
            await shard.check_recording(org, sid)
        with pytest.raises(Overloaded, match="being replaced"):  # `call` dispatches to the gated method
            await shard.call("check_recording", org, sid)
        await shard.check_health()  # the readiness probe still answers
        await shard.reopen()
        await shard.check_recording(org, sid)

    asyncio.run(go())
