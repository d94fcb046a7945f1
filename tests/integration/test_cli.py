"""`tracemill up` as a user runs it: a subprocess that serves, then stops on SIGTERM leaving
no process behind; and `tracemill keys` against the same state directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from actors.auth import key_prefix
from tests.support.client import click_event
from cluster.doubles.net import free_port, wait_for

# A bootstrap key must have the generated form and 128+ bits (`tracemill keys generate`).
BOOTSTRAP = "tm_c11c11c11c11c11c_Q7vZr2KxW9pLm4TbN8sYc3HdJ6fGa1E"


def tracemill(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cluster.cli", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def haproxy_serving(port: int) -> list[psutil.Process]:
    """HAProxy processes whose config binds `port` (Serve writes one config per node)."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmd = proc.info["cmdline"] or []
        if proc.info["name"] == "haproxy" and "-f" in cmd:
            config = Path(cmd[cmd.index("-f") + 1])
            if config.exists() and f":{port}" in config.read_text():
                found.append(proc)
    return found


def postgres_processes(state: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "postgres" and str(state) in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


@pytest.mark.timeout(400)
def test_up_serves_then_stops_everything_on_sigterm(tmp_path: Path) -> None:
    state = tmp_path / "state"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "DATABASE_URL", "TRACEMILL_S3_BUCKET")}
    env["TRACEMILL_BOOTSTRAP_API_KEY"] = BOOTSTRAP
    # The test session's own stack runs beside this one: `up` must pick Serve ports of its own.
    env = {k: v for k, v in env.items() if not k.startswith("RAY_SERVE_")}
    log = (tmp_path / "up.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cluster.cli", "up", "--port", str(port), "--state-dir", str(state), "--num-cpus", "1"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(base + "/readyz", timeout=5).status_code == 200, timeout_s=240,
                 interval_s=1, what="tracemill up to be ready")
        auth = {"Authorization": f"Bearer {BOOTSTRAP}"}
        created = httpx.post(base + "/v1/sessions", json={"type": "automated"}, headers=auth, timeout=30)
        assert created.status_code == 201, created.text
        sid = created.json()["session_id"]
        ack = httpx.post(f"{base}/v1/sessions/{sid}/events", json={"events": [click_event(0)]}, headers=auth, timeout=30)
        assert ack.json()["acked_through"] == 0
        # Serve answers before `up` has printed its banner (it still writes its state file).
        wait_for(lambda: "tracemill is up" in (tmp_path / "up.log").read_text(), timeout_s=60, interval_s=0.5,
                 what="the banner")
        output = (tmp_path / "up.log").read_text()
        assert base in output and f"{base}/docs" in output and BOOTSTRAP in output
        assert f"dashboard  {base}/dashboard#key={BOOTSTRAP}" in output  # tracemill's own, as the README says
        status = tracemill("status", "--state-dir", str(state), env=env)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "readyz     200" in status.stdout and "recording" in status.stdout
        assert "nodes      1 alive" in status.stdout, status.stdout
        assert "serve      tracemill RUNNING" in status.stdout and "Ingress" in status.stdout
        assert "backlog    0 finalisations unfinished" in status.stdout
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        assert postgres_processes(state)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        wait_for(lambda: not [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE],
                 timeout_s=30, what="every process `up` started to exit")
        assert not postgres_processes(state)
        assert not haproxy_serving(port)
        assert not (state / "cluster.json").exists()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for leftover in postgres_processes(state):  # only after a failure above
            leftover.terminate()
        log.close()

    # The state survives: keys work against it with nothing running, and leave nothing running.
    created = tracemill("keys", "--state-dir", str(state), "create", "--scopes", "read", "--name", "ci", env=env)
    assert created.returncode == 0, created.stderr
    new_key = created.stdout.split("key     ")[1].strip()
    shown = key_prefix(new_key)  # tm_<lookup id>: what may be printed of a key
    listed = tracemill("keys", "--state-dir", str(state), "list", env=env)
    assert shown in listed.stdout and new_key not in listed.stdout and "bootstrap" in listed.stdout
    assert new_key.rsplit("_", 1)[1][:8] not in listed.stdout  # nothing of the secret
    # The pepper `up` made lives in the state directory, private.
    assert (state / "key_pepper").stat().st_mode & 0o777 == 0o600
    rotated = tracemill("keys", "--state-dir", str(state), "rotate", shown, "--overlap", "1h", env=env)
    assert rotated.returncode == 0, rotated.stderr
    replacement = rotated.stdout.split("key     ")[1].split()[0]
    assert "works until" in rotated.stdout and replacement != new_key
    listed = tracemill("keys", "--state-dir", str(state), "list", env=env).stdout
    old_line = next(line for line in listed.splitlines() if shown in line)
    new_line = next(line for line in listed.splitlines() if key_prefix(replacement) in line)
    assert "rotating" in old_line and " analyst " in new_line and " ci " in new_line and "active" in new_line
    twice = tracemill("keys", "--state-dir", str(state), "rotate", shown, env=env)
    assert twice.returncode == 2 and "already rotated" in twice.stderr
    revoked = tracemill("keys", "--state-dir", str(state), "revoke", shown, env=env)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    again = tracemill("keys", "--state-dir", str(state), "revoke", shown, env=env)
    assert again.returncode == 2 and "no active API key" in again.stderr
    bad = tracemill("keys", "--state-dir", str(state), "create", "--scopes", "root", env=env)
    assert bad.returncode == 2 and "scopes" in bad.stderr
    # Organisations and workspaces, and a key with a role for a workspace and a recorder.
    org = tracemill("orgs", "--state-dir", str(state), "create", "acme", env=env)
    assert org.returncode == 0 and "owner key     tm_" in org.stdout, org.stderr
    made = tracemill("workspaces", "--state-dir", str(state), "create", "field", "--org", "acme", env=env)
    assert made.returncode == 0, made.stderr
    spaces = tracemill("workspaces", "--state-dir", str(state), "list", "--org", "acme", env=env).stdout
    assert " field" in spaces and " default" in spaces
    assert "acme" in tracemill("orgs", "--state-dir", str(state), "list", env=env).stdout
    recorder = tracemill("keys", "--state-dir", str(state), "create", "--org", "acme", "--workspace", "field",
                         "--role", "recorder", "--recorder", "alice", env=env)
    assert recorder.returncode == 0 and "role    recorder" in recorder.stdout, recorder.stderr
    nowhere = tracemill("keys", "--state-dir", str(state), "create", "--org", "acme", "--workspace", "nope",
                        "--role", "recorder", env=env)
    assert nowhere.returncode == 2 and "no workspace" in nowhere.stderr
    assert not postgres_processes(state)


def test_up_rejects_bad_arguments(tmp_path: Path) -> None:
    result = tracemill("up", "--port", "70000", "--state-dir", str(tmp_path))
    assert result.returncode == 2 and "port" in result.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("weak", ["tm_bootstrap_key_for_the_cli_test", "0123456789abcdef",
                                  "tm_0123456789abcdef_aaaaaaaaaaaaaaaaaaaaaaaaaaaa"])
def test_up_refuses_a_weak_bootstrap_key_before_starting_anything(tmp_path: Path, weak: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)} | {"TRACEMILL_BOOTSTRAP_API_KEY": weak}
    result = tracemill("up", "--state-dir", str(tmp_path / "state"), "--port", str(free_port()), env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "TRACEMILL_BOOTSTRAP_API_KEY" in result.stderr and "tracemill keys generate" in result.stderr
    assert not (tmp_path / "state").exists()
