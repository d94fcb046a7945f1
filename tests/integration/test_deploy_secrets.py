"""`tracemill deploy` against a head started with `ray start --head` (dashboard on): no secret
in anything the cluster shows (every key of Ray's KV store in the namespaces Ray, Serve and
tracemill write, and the Serve config from the dashboard's API), jobs still find the database,
and a second deploy with changed settings replaces the shards while a client streams, with
every acked event stored."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from websockets.exceptions import ConnectionClosed

from cluster.doubles.net import free_port, wait_for
from tests.integration.test_attach import _ready, clean_env, cluster_actors
from tests.integration.test_cli import tracemill
from tests.integration.test_faults import assert_stored_exactly_once
from tests.support.client import Api, click_event

PASSWORD = "PLANTED-pw-7c1d0e"
OPENAI_KEY = "sk-PLANTED-openai-4b2a9f"


def planted_dsn(stack: Any) -> str:
    """The test stack's DSN with a recognisable password (its socket's trust auth ignores it)."""
    parts = urlsplit(stack.settings.database.url.get_secret_value())
    user = (parts.username or "postgres")
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user}:{PASSWORD}@{host}"))


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    temp = tmp_path_factory.mktemp("head")
    port, dashboard = free_port(), free_port()
    proc = subprocess.Popen(
        ["ray", "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=true",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
         f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
         f"--ray-client-server-port={free_port()}", f"--temp-dir={temp}", "--block"],
        stdout=(temp / "head.log").open("w"), stderr=subprocess.STDOUT, env=clean_env(), start_new_session=True,
    )
    wait_for(lambda: "--block" in (temp / "head.log").read_text(), timeout_s=90, what="ray start --head")
    yield {"address": f"127.0.0.1:{port}", "dashboard": f"http://127.0.0.1:{dashboard}"}
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)


@pytest.fixture(scope="module")
def deployed(head: dict[str, str], stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    state = tmp_path_factory.mktemp("deploy-state")
    env = clean_env() | {"DATABASE_URL": planted_dsn(stack), "OPENAI_API_KEY": OPENAI_KEY,
                         "TRACEMILL_STATE_DIR": str(state)}
    pepper = getattr(stack.settings.auth, "pepper", None)
    if pepper is not None:  # the test stack's keys must work here too: the same database
        env["TRACEMILL_KEY_PEPPER"] = pepper.get_secret_value()
    port = free_port()
    args = ["deploy", "--address", head["address"], "--host", "127.0.0.1", "--port", str(port),
            "--objects-dir", str(state / "objects")]
    done = tracemill(*args, env=env, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: _ready(base), timeout_s=60, what="the deployed app to be ready")
    yield {"base": base, "env": env, "args": args, "state": state}
    tracemill("down", "--address", head["address"], env=env)


_INSPECT = r"""
import json, sys, urllib.request
import ray
from ray._private.authentication.http_token_authentication import get_auth_headers_if_auth_enabled
import ray._private.ray_constants as constants

address, dashboard, planted = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
ray.init(address=address, logging_level="ERROR")
gcs = ray._private.worker.global_worker.gcs_client
namespaces = {v for k, v in vars(constants).items() if k.startswith("KV_NAMESPACE_")} | {b"serve", b"tracemill", b"runtime_env"}
keys, hits = [], []
for ns in sorted(namespaces, key=lambda n: n or b""):
    for key in gcs.internal_kv_keys(b"", ns):
        value = gcs.internal_kv_get(key, ns) or b""
        keys.append(((ns or b"").decode(), key.decode(errors="replace")))
        hits += [[(ns or b"").decode(), key.decode(errors="replace"), p] for p in planted if p.encode() in key + value]
request = urllib.request.Request(dashboard + "/api/serve/applications/", headers=get_auth_headers_if_auth_enabled({}))
serve_config = urllib.request.urlopen(request, timeout=30).read().decode()
print(json.dumps({"keys": keys, "hits": hits, "serve_config": serve_config}))
"""


def inspect_cluster(head: dict[str, str], planted: list[str]) -> dict[str, Any]:
    env = clean_env() | {"RAY_AUTH_MODE": "token"}
    out = subprocess.run([sys.executable, "-c", _INSPECT, head["address"], head["dashboard"], json.dumps(planted)],
                         capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


_JOB = r"""
import asyncio, asyncpg, sys
from jobs.entrypoint import join_cluster
settings = join_cluster()
async def count() -> int:
    conn = await asyncpg.connect(settings.database.url.get_secret_value())
    try:
        return await conn.fetchval("SELECT count(*) FROM sessions")
    finally:
        await conn.close()
print("database answers:", asyncio.run(count()) >= 0, "objects:", settings.object_store.local_dir is not None)
"""


def test_no_secret_in_the_kv_store_or_the_serve_config_and_jobs_still_find_the_database(
    head: dict[str, str], deployed: dict[str, Any], stack: Any
) -> None:
    planted = [PASSWORD, OPENAI_KEY]
    pepper = deployed["env"].get("TRACEMILL_KEY_PEPPER")
    planted += [pepper] if pepper else []
    # A job as README's `ray job submit` starts one: no runtime env but the cluster's address.
    script = deployed["state"] / "job.py"
    script.write_text(_JOB)
    submitted = subprocess.run(
        ["ray", "job", "submit", "--address", head["dashboard"], "--runtime-env-json",
         json.dumps({"env_vars": {"TRACEMILL_RAY_ADDRESS": head["address"]}}), "--", sys.executable, str(script)],
        capture_output=True, text=True, timeout=240, env=clean_env() | {"RAY_AUTH_MODE": "token"})
    logs = submitted.stdout + submitted.stderr
    assert submitted.returncode == 0 and "database answers: True objects: True" in logs, logs[-3000:]

    seen = inspect_cluster(head, planted)
    assert ["tracemill", "tracemill/settings"] in seen["keys"], "tracemill's own key was not read"
    assert any(ns == "serve" for ns, _ in seen["keys"]), "Serve's checkpoint was not read"
    assert seen["hits"] == [], seen["hits"]
    config = seen["serve_config"]
    assert '"import_path": "serve_app.app:build_app"' in config and "TRACEMILL_SECRETS_FILE" in config
    assert not [p for p in planted if p in config], "a secret in the dashboard's Serve config"
    assert not [p for p in planted if p in logs], "a secret in the job's log"

    secrets = deployed["state"] / "deploy-secrets.json"  # where they are instead: this user's only
    assert (secrets.stat().st_mode & 0o777) == 0o600 and PASSWORD in secrets.read_text()


class StoppableStream:
    """A client as PROTOCOL.md asks: keeps unacked events and resends them after any failure
    or `slow_down`; streams until told to stop."""

    def __init__(self, api: Api, sid: str, batch: int = 20):
        self.api, self.sid, self.batch = api, sid, batch
        self.acked_through = -1
        self.interruptions = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with self.api.stream(self.sid) as ws:
                    while not self.stop.is_set():
                        start = self.acked_through + 1
                        ws.send(json.dumps({"type": "events", "events": [click_event(s) for s in
                                                                          range(start, start + self.batch)]}))
                        answer = json.loads(ws.recv(timeout=30))
                        if answer["type"] == "ack":
                            self.acked_through = max(self.acked_through, answer["acked_through"])
                        else:
                            self.interruptions += 1
                            time.sleep(0.2)
                        time.sleep(0.02)
            except (ConnectionClosed, OSError, TimeoutError):
                self.interruptions += 1
                time.sleep(0.2)
                try:
                    self.acked_through = max(self.acked_through, self.api.session(self.sid)["acked_through"])
                except Exception:  # noqa: BLE001 - the app may be between replicas: try again
                    pass


def shard_names(head: dict[str, str]) -> list[str]:
    return sorted(n for n in cluster_actors(head["address"]) if n.startswith("session-shard-"))


def test_a_deploy_with_changed_settings_replaces_the_shards_and_loses_no_acked_event(
    head: dict[str, str], deployed: dict[str, Any], stack: Any, api: Api
) -> None:
    before = shard_names(head)
    assert len(before) == stack.settings.shards.count and len({n.rsplit("-", 1)[0] for n in before}) == 1
    client = Api(deployed["base"], api.key)
    sid = client.create_session()
    stream = StoppableStream(client, sid)
    streaming = threading.Thread(target=stream.run, daemon=True)
    streaming.start()
    try:
        wait_for(lambda: stream.acked_through >= 200, timeout_s=60, what="the stream to get going")
        changed = tracemill(*deployed["args"], env=deployed["env"] | {"TRACEMILL_SHARDS": "3"}, timeout=240)
        assert changed.returncode == 0, changed.stderr[-3000:]
        at_deploy = stream.acked_through
        wait_for(lambda: stream.acked_through >= at_deploy + 300, timeout_s=90, what="the stream on the new shards")
    finally:
        stream.stop.set()
        streaming.join(timeout=60)
    after = shard_names(head)
    assert len(after) == 3 and not set(after) & set(before), (before, after)
    assert_stored_exactly_once(stack, sid, stream.acked_through)
    print(f"acked through {stream.acked_through}, {stream.interruptions} interruptions while replacing")
