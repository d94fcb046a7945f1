"""Ray's fake multi-node cluster on this machine: the autoscaling config for the
`fake_multinode` provider, the head's command and environment, and `FakeCluster`, which starts
that head in a temp dir of its own and ends everything it started (never `ray stop`, which
would end every Ray on the machine). Used by `cluster.autoscale.demo`."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import yaml

from cluster.doubles.net import free_port

log = logging.getLogger("tracemill.fake_cluster")


# The fake provider's workers join <node ip>:6379 unless the provider config names the GCS
# (`provider.gcs_address`, read by FakeMultiNodeProvider in Ray 2.60): 6379 by default, as
# Ray's docs do, and `--gcs-port` for a machine where 6379 is taken.
GCS_PORT = 6379


HEAD_NODE_TYPE = "ray.head.default"  # fixed: the fake provider tags its head with this type


WORKER_NODE_TYPE = "cpu2"


FAKE_HEAD_NODE_ID = "f" * 51 + "00000"  # the node id RAY_FAKE_CLUSTER gives the head


WORKER_OBJECT_STORE_BYTES = 200 * 1024 * 1024


HEAD_OBJECT_STORE_BYTES = 300 * 1024 * 1024


REPO = Path(__file__).resolve().parents[2]


def autoscaling_config(*, idle_timeout_s: float = 30.0, max_workers: int = 3, worker_cpus: int = 2,
                       upscaling_speed: float = 1.0, gcs_address: str | None = None) -> dict[str, Any]:
    """The cluster config the head's autoscaler reads: every key set, because Ray's defaults for
    this provider (fake_multi_node/example.yaml) are not shipped in the wheel. `gcs_address`
    ("ip:port") is where the fake workers join; unset, they join <node ip>:6379."""
    if idle_timeout_s <= 0:
        raise ValueError("the idle timeout must be positive")
    provider: dict[str, Any] = {
        "type": "fake_multinode",
        # The fake nodes have no IPs of their own: the autoscaler keys them by node id.
        "use_node_id_as_ip": True,
        "disable_node_updaters": True,
        "disable_launch_config_check": True,
    }
    if gcs_address:
        provider["gcs_address"] = gcs_address
    return {
        "cluster_name": "tracemill-autoscale-demo",
        "max_workers": max_workers,
        "upscaling_speed": upscaling_speed,
        # Minutes, and a float is fine: the autoscaler compares against 60 * this.
        "idle_timeout_minutes": round(idle_timeout_s / 60.0, 4),
        "provider": provider,
        "head_node_type": HEAD_NODE_TYPE,
        "available_node_types": {
            # No CPUs on the head: every num_cpus>0 task or actor needs a worker.
            HEAD_NODE_TYPE: {"resources": {"CPU": 0}, "node_config": {}, "min_workers": 0, "max_workers": 0},
            WORKER_NODE_TYPE: {
                "resources": {"CPU": worker_cpus, "object_store_memory": WORKER_OBJECT_STORE_BYTES},
                "node_config": {},
                "min_workers": 0,
                "max_workers": max_workers,
            },
        },
        "auth": {},
        "docker": {},
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


def write_autoscaling_config(path: Path, config: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def head_command(config_path: Path, temp_dir: Path, *, ray_client_port: int, port: int = GCS_PORT) -> list[str]:
    ray_cli = Path(sys.executable).with_name("ray")
    return [
        str(ray_cli if ray_cli.exists() else "ray"), "start", "--head", f"--port={port}", "--num-cpus=0",
        f"--object-store-memory={HEAD_OBJECT_STORE_BYTES}", f"--autoscaling-config={config_path}",
        f"--temp-dir={temp_dir}", "--include-dashboard=false", f"--ray-client-server-port={ray_client_port}",
        "--disable-usage-stats", "--block",
    ]


def head_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The head's environment; the autoscaler runs in it and starts the fake workers with it."""
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if k != "RAY_ADDRESS" and not k.startswith("RAY_SERVE_")}
    env.update({"RAY_FAKE_CLUSTER": "1",
                # The autoscaler's loop (default 5 s): 1 s makes launches and removals prompt.
                "AUTOSCALER_UPDATE_INTERVAL_S": "1",
                # On SIGTERM `ray start --block` first drains its node through the GCS for up to
                # 30 s; the demo ends the whole cluster at once (the GCS too), so that drain can
                # only time out. Nothing runs by then: tear down at once.
                "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"})
    return env


def port_in_use(port: int) -> bool:
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            return True
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class PortBusyError(RuntimeError):
    pass


class FakeCluster:
    """A `RAY_FAKE_CLUSTER=1 ray start --head --block` of our own, in its own temp dir and
    process group; `stop()` ends that group and then whatever else was started under the temp
    dir (the worker raylets the autoscaler launched, and their workers)."""

    def __init__(self, work_dir: Path, config: dict[str, Any], port: int = GCS_PORT) -> None:
        self.work_dir, self.port = work_dir, port
        self.temp_dir = work_dir / "ray"
        self.config_path = write_autoscaling_config(work_dir / "autoscaling.yaml", config)
        self.log_path = work_dir / "head.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.address = f"127.0.0.1:{port}"

    def start(self, timeout_s: float = 90) -> None:
        if port_in_use(self.port):
            hint = " (or pass --gcs-port 0 for a free one)" if self.port == GCS_PORT else ""
            raise PortBusyError(f"port {self.port} is in use: the head's GCS needs it{hint}")
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        cmd = head_command(self.config_path, self.temp_dir, ray_client_port=free_port(), port=self.port)
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=head_env(),
                                         cwd=REPO, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited ({self.proc.returncode}): {self.log_tail()}")
            if "--block" in self.log_path.read_text(errors="replace"):
                return
            time.sleep(0.5)
        raise TimeoutError(f"ray start --head not up after {timeout_s:.0f}s: {self.log_tail()}")

    def log_tail(self, chars: int = 2000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def _ours(self) -> list[psutil.Process]:
        """Processes started under our temp dir, their children, and the head's process group."""
        marker = str(self.temp_dir)
        pgid = self.proc.pid if self.proc else None
        found: dict[int, psutil.Process] = {}
        for proc in psutil.process_iter(["pid", "cmdline"]):
            try:
                mine = marker in " ".join(proc.info["cmdline"] or [])
                if not mine and pgid is not None:
                    mine = os.getpgid(proc.pid) == pgid
                if mine:
                    found[proc.pid] = proc
                    for child in proc.children(recursive=True):
                        found[child.pid] = child
            except (psutil.Error, ProcessLookupError):
                continue
        found.pop(os.getpid(), None)
        return list(found.values())

    def stop(self) -> list[int]:
        """End the head (SIGTERM to its group: `ray start --block` then stops its own processes),
        then any process of ours still alive. Returns the pids that needed the second step."""
        leftovers_before = self._ours()  # fake workers' raylets are children of the monitor
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        survivors = [p for p in {p.pid: p for p in leftovers_before + self._ours()}.values() if _alive(p)]
        for proc in survivors:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        _, alive = psutil.wait_procs(survivors, timeout=10)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(alive, timeout=5)
        return [p.pid for p in survivors]

    def monitor_events(self, t0: float) -> list[dict[str, Any]]:
        """The autoscaler's own account of launches and terminations, from its log."""
        wanted = re.compile(r"Got \d+ nodes to launch|Launching \d+ nodes|Queue \d+ new nodes|Terminating|"
                            r"Removing \d+ nodes",
                            re.IGNORECASE)
        stamp = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})")
        out = []
        sessions = [p for p in self.temp_dir.glob("session_*") if not p.is_symlink()]  # not session_latest
        for path in sorted(p / "logs" / "monitor.log" for p in sessions):
            if not path.exists():
                continue
            for line in path.read_text(errors="replace").splitlines():
                m = stamp.match(line)
                if not m or not wanted.search(line) or "NodeProvider:" in line:
                    continue
                wall = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                message = re.sub(r"^.*? -- ", "", line).strip()
                out.append({"t": round(wall - t0, 2), "wall": wall, "line": message[:300]})
        return out
