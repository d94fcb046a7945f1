"""tracemill on a Ray cluster it did not start: `up --address` against a head started with
`ray start --head`, then `deploy` and `down`; the cluster outlives all three."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_cli import tracemill
from cluster.doubles.net import free_port, wait_for

BOOTSTRAP = "tm_a77ac4a77ac4a77a_Hq3Xn8Vb2Lw6Kt9Rz4Mp7Yc1Fd5Gs0J"  # 128+ bits, as `up` requires


def clean_env() -> dict[str, str]:
    """No trace of the test session's own stack: its Serve ports, its database, its address."""
    drop = ("RAY_ADDRESS", "DATABASE_URL", "TRACEMILL_S3_BUCKET")
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("RAY_SERVE_")}


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A separately started head (`ray start --head --block`), stopped by ending that command."""
    temp = tmp_path_factory.mktemp("head")
    port = free_port()
    proc = subprocess.Popen(
        ["ray", "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
         f"--ray-client-server-port={free_port()}", f"--temp-dir={temp}", "--block"],
        stdout=(temp / "head.log").open("w"), stderr=subprocess.STDOUT, env=clean_env(), start_new_session=True,
    )
    address = f"127.0.0.1:{port}"
    wait_for(lambda: "--block" in (temp / "head.log").read_text(), timeout_s=60, what="ray start --head")
    yield address
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)


@pytest.fixture(scope="module")
def serve_port() -> int:
    # Serve fixes its HTTP port when it first starts in a cluster; later deploys reuse it.
    return free_port()


def cluster_actors(address: str) -> list[str]:
    code = ("import ray; ray.init(address=%r, logging_level='ERROR');"
            "print(sorted(a['name'] for a in ray.util.list_named_actors(all_namespaces=True)))" % address)
    env = clean_env() | {"RAY_AUTH_MODE": "token"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    return list(eval(out.stdout.strip().splitlines()[-1]))  # noqa: S307 - our own printed list


@pytest.mark.timeout(300)
def test_up_joins_an_existing_cluster_and_leaves_it_running(head: str, serve_port: int, tmp_path: Path) -> None:
    port = serve_port
    env = clean_env() | {"TRACEMILL_BOOTSTRAP_API_KEY": BOOTSTRAP}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cluster.cli", "up", "--address", head, "--port", str(port),
         "--state-dir", str(tmp_path / "state")],
        stdout=(tmp_path / "up.log").open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _ready(base), timeout_s=120, what="tracemill up --address")
        created = httpx.post(f"{base}/v1/sessions", json={"type": "human"},
                             headers={"Authorization": f"Bearer {BOOTSTRAP}"}, timeout=30)
        assert created.status_code == 201, created.text
        assert any(name.startswith("session-shard-") for name in cluster_actors(head))
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0, (tmp_path / "up.log").read_text()[-3000:]
    remaining = cluster_actors(head)  # the cluster still answers
    assert not [n for n in remaining if n.startswith("session-shard-")], remaining


@pytest.mark.timeout(300)
def test_deploy_then_down_on_a_running_cluster(head: str, serve_port: int, stack: Any, tmp_path: Path) -> None:
    port = serve_port
    env = clean_env() | {"DATABASE_URL": stack.settings.database.url.get_secret_value()}
    refused = tracemill("deploy", "--address", head, "--port", str(port), env=clean_env())
    assert refused.returncode == 2 and "DATABASE_URL" in refused.stderr
    refused = tracemill("deploy", "--address", head, "--port", str(port), env=env)
    assert refused.returncode == 2 and "TRACEMILL_KEY_PEPPER" in refused.stderr
    env["TRACEMILL_KEY_PEPPER"] = stack.settings.auth.pepper.get_secret_value()

    deployed = tracemill("deploy", "--address", head, "--host", "127.0.0.1", "--port", str(port),
                         "--objects-dir", str(tmp_path / "objects"), env=env, timeout=180)
    assert deployed.returncode == 0, deployed.stderr[-3000:]
    # The shards start on first use, so readiness follows the deploy by a few seconds.
    wait_for(lambda: _ready(f"http://127.0.0.1:{port}"), timeout_s=60, what="the deployed app to be ready")

    removed = tracemill("down", "--address", head, env=env)
    assert removed.returncode == 0, removed.stderr[-3000:]
    assert "session-shard-" in removed.stdout or "none" in removed.stdout
    assert not [n for n in cluster_actors(head) if n.startswith("session-shard-")]
    wait_for(lambda: not _ready(f"http://127.0.0.1:{port}"), timeout_s=30, what="the app to go")


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False
