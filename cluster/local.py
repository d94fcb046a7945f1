"""A whole tracemill on one machine: Ray, PostgreSQL, object store, Serve. Used by
`tracemill up`, the benchmarks and the integration tests, so all three run the same start-up."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import ray
from ray import serve

from actors.auth import check_key_strength, create_key, pepper_of, register_key, revoke_key_by_name
from actors.storage.postgres import apply_migrations, connect_pool
from cluster.embedded_postgres import EmbeddedPostgres
from actors.settings_registry import publish_settings
from cluster.serve_deploy import APP_NAME, DEFAULT_SERVE_CONFIG, deploy_app, render_serve_config
from configs.secrets import write_secrets_file
from configs.settings import TracemillSettings
from serve_app.serve_hooks import CALLBACK_ENV

__all__ = ["LocalStack", "UP_KEY_NAME", "THROUGHPUT_ENV", "LOCAL_RAY_ENV", "private_serve_ports"]

log = logging.getLogger(__name__)

UP_KEY_NAME = "tracemill-up"
# DESIGN.md decision 4: Serve's HAProxy ingress roughly doubles WebSocket frames/s.
THROUGHPUT_ENV = {
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    # In this mode Serve floors every ingress replica's shutdown at a 30 s drain, which would
    # make each stop (and test run) wait half a minute; clients resend what was not acked.
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "5",
}
# Ray starts its workers at nice 15. On one machine that hands the CPU to PostgreSQL and any
# client first and starves the replicas and shards of the same service (measured: ingest
# +40% at nice 0). The local stack runs them all at the same priority.
# CALLBACK_ENV: Serve's HTTP servers replace a request id that is not short and plain.
LOCAL_RAY_ENV = {"RAY_worker_niceness": "0", **CALLBACK_ENV}


def default_logical_cpus() -> int:
    """One logical CPU more than the machine has cores. The always-on actors (shards, Serve
    replicas and controller) reserve fractions of a CPU for scheduling yet mostly wait on
    sockets; without the extra one, their reservations would leave room for only one
    `num_cpus=1` compression task on a 2-core machine, and half the cores would sit idle."""
    return (os.cpu_count() or 1) + 1


@dataclass
class LocalStack:
    state_dir: Path
    host: str = "127.0.0.1"
    port: int = 8000
    num_cpus: int | None = None
    # Join this Ray cluster instead of starting one ("auto", "host:port"); its operator
    # chooses its Serve proxy mode, so the throughput settings here apply to own clusters only.
    address: str | None = None
    throughput_mode: bool = True
    # Ray's session files; None: Ray's default (/tmp/ray), where `ray status` looks. A cluster of
    # its own there is what keeps Ray Jobs on this cluster when another one starts later on the
    # machine: the job supervisor gives each driver the cluster named by its temp dir's
    # `ray_current_cluster`, which names the most recently started cluster that shares it.
    ray_temp_dir: Path | None = None
    serve_config: Path = DEFAULT_SERVE_CONFIG
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    postgres: EmbeddedPostgres | None = None
    settings: TracemillSettings | None = None
    started_ray: bool = False
    dashboard_url: str | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start_storage(self) -> TracemillSettings:
        """PostgreSQL (embedded unless DATABASE_URL is set), migrations, the object store."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        overrides: dict[str, Any] = {}
        if not self.env.get("DATABASE_URL"):
            self.postgres = EmbeddedPostgres(self.state_dir / "pgdata")
            overrides["database"] = {"url": self.postgres.start()}
        if not self.env.get("TRACEMILL_S3_BUCKET"):
            overrides["object_store"] = {"kind": "local", "local_dir": str(self.state_dir / "objects")}
        from cluster.keys_cli import with_local_pepper

        self.settings = with_local_pepper(TracemillSettings.from_env(self.env, overrides), self.state_dir)
        asyncio.run(apply_migrations(self.settings.database.url.get_secret_value()))
        return self.settings

    def start_ray(self) -> None:
        if ray.is_initialized():
            return
        if self.address:
            from cluster.remote import connect

            connect(self.address)
            self.dashboard_url = None
            return
        os.environ.update(LOCAL_RAY_ENV)  # read by the raylet and workers Ray starts next
        if self.throughput_mode:
            os.environ.update(THROUGHPUT_ENV)
            os.environ.update(private_serve_ports())
        use_free_agent_port()
        context = ray.init(
            # "local": always a new cluster of our own; without it ray.init may join whatever
            # cluster another process left running on this machine.
            address="local",
            num_cpus=self.num_cpus or default_logical_cpus(),
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            _temp_dir=str(self.ray_temp_dir) if self.ray_temp_dir else None,
            namespace="tracemill",
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
        self.started_ray = True
        self.dashboard_url = context.dashboard_url

    @property
    def secrets_file(self) -> Path:
        """The deployment's secrets, readable by this user only (configs/secrets.py)."""
        return self.state_dir / "secrets.json"

    def write_secrets(self) -> Path:
        assert self.settings is not None, "start_storage() first"
        return write_secrets_file(self.secrets_file, self.settings.secret_values())

    def deploy(self) -> None:
        """The Serve app and the shards of these settings; a stack already deployed with other
        settings has its shards drained and replaced (actors.ingest.shard_pool)."""
        secrets = self.write_secrets()
        config = render_serve_config(self.settings, host=self.host, port=self.port, path=self.serve_config,
                                     secrets_file=secrets)
        publish_settings(self.settings, str(secrets))  # for Ray Job drivers (jobs/), which start without our env
        deploy_app(self.settings, config, secrets)
        # The daily retention + purge (issue 18.4); it reads the settings published above.
        from actors.retention.scheduler import ensure_scheduler

        ensure_scheduler(self.settings.schedule)

    def start(self, bootstrap_key: str | None = None) -> str:
        """Start everything; returns the API key to print (registered before serving starts)."""
        started = time.monotonic()
        if bootstrap_key:  # refused before anything starts
            check_key_strength(bootstrap_key, "TRACEMILL_BOOTSTRAP_API_KEY")
        try:
            self.start_storage()
            key = self.issue_keys(bootstrap_key)
            self.start_ray()
            self.deploy()
            self._write_state_file()
        except BaseException:
            self.stop()  # a failed start leaves nothing running behind it
            raise
        log.info("tracemill up in %.1fs", time.monotonic() - started)
        return key

    def issue_keys(self, bootstrap_key: str | None) -> str:
        """Register the bootstrap key if one is set, else a fresh key that replaces the last `up`'s."""
        assert self.settings is not None
        return asyncio.run(self._issue_keys(bootstrap_key))

    async def _issue_keys(self, bootstrap_key: str | None) -> str:
        pepper = pepper_of(self.settings.auth)  # type: ignore[union-attr]
        pool = await connect_pool(self.settings.database)  # type: ignore[union-attr]
        try:
            if bootstrap_key:
                await register_key(pool, bootstrap_key, scopes=["ingest", "read", "admin"], name="bootstrap",
                                   pepper=pepper)
                return bootstrap_key
            await revoke_key_by_name(pool, UP_KEY_NAME)
            _, key = await create_key(pool, scopes=["ingest", "read"], name=UP_KEY_NAME, pepper=pepper)
            return key
        finally:
            await pool.close()

    def stop(self) -> None:
        """Stop what this stack started, in reverse order; each step runs even if one fails."""
        steps = []
        if ray.is_initialized():
            steps.append(("serve", lambda: serve.delete(APP_NAME) if not self.started_ray else serve.shutdown()))
            if not self.started_ray:  # someone else's cluster: take only what we put there
                from cluster.remote import remove_tracemill_actors

                steps.append(("actors", remove_tracemill_actors))
                steps.append(("disconnect", ray.shutdown))
            if self.started_ray:
                node_id = ray.get_runtime_context().get_node_id()
                steps.append(("ray", ray.shutdown))
                steps.append(("haproxy", lambda: _reap_haproxy(node_id)))
        if self.postgres is not None:
            steps.append(("postgres", self.postgres.stop))
        for name, step in steps:
            try:
                step()
            except Exception:  # noqa: BLE001 - keep stopping the rest
                log.exception("stopping %s failed", name)
        (self.state_dir / "cluster.json").unlink(missing_ok=True)
        self.secrets_file.unlink(missing_ok=True)

    def _write_state_file(self) -> None:
        """What `tracemill status` and other commands read to find this running stack."""
        info = {
            "pid": os.getpid(),
            "endpoint": self.endpoint,
            "docs": f"{self.endpoint}/docs",
            "ray_address": ray.get_runtime_context().gcs_address,
            "dashboard": self.dashboard_url,
            "embedded_postgres": self.postgres is not None,
        }
        (self.state_dir / "cluster.json").write_text(json.dumps(info, indent=2))


def _reap_haproxy(node_id: str) -> None:
    """End HAProxy processes Serve left behind for this node.

    Serve reloads HAProxy by starting a new process that takes over from the old one; that
    process can outlive its manager actor, and `ray.shutdown()` then leaves it running
    (seen here: orphaned haproxy processes after stops). Its config path names the node.
    """
    marker = f"/haproxy-serve/{node_id}/"
    leftovers = [
        proc for proc in psutil.process_iter(["name", "cmdline"])
        if proc.info["name"] == "haproxy" and marker in " ".join(proc.info["cmdline"] or [])
    ]
    for proc in leftovers:
        proc.terminate()
    _, alive = psutil.wait_procs(leftovers, timeout=5)
    for proc in alive:
        proc.kill()


def use_free_agent_port() -> None:
    """Give the next local cluster's dashboard agent a free port of its own.

    The agent serves the Ray Jobs API for its node; Ray 2.60 always binds it to 52365 and
    `ray.init` has no parameter for it, so a second cluster on the machine (two `up`s, or `up`
    and the test suite) silently runs without a Jobs API and job submissions fail with "No
    available agent". The port is a default argument of RayParams, so that is what changes.
    """
    from ray._private.parameter import RayParams

    defaults = list(RayParams.__init__.__defaults__ or ())
    names = RayParams.__init__.__code__.co_varnames[1:RayParams.__init__.__code__.co_argcount]
    name = "dashboard_agent_listen_port"
    index = len(defaults) - len(names) + names.index(name) if name in names else -1
    if 0 <= index < len(defaults):
        defaults[index] = _free_range(1)
        RayParams.__init__.__defaults__ = tuple(defaults)
    else:  # a Ray whose RayParams changed shape: keep its default rather than guess
        log.warning("could not choose the dashboard agent's port; Ray uses its default")


def private_serve_ports(range_size: int = 16) -> dict[str, str]:
    """Ports of this stack's own for every listener Serve's throughput mode opens.

    Serve binds its direct-ingress replicas with SO_REUSEPORT from a fixed range (30000+), and
    its fallback proxy and HAProxy stats/metrics on fixed ports. A second stack on the same
    machine would share those sockets, and the kernel would hand its requests to the first
    stack's replicas (seen: an `up` answering 401 with another database's keys). Free ranges
    per stack keep two stacks — or a stack and the test suite — apart.
    """
    taken: set[int] = set()

    def claim(size: int) -> int:
        start = _free_range(size, avoid=taken)
        taken.update(range(start, start + size))
        return start

    http, grpc = claim(range_size), claim(range_size)
    return {
        "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(http),
        "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(http + range_size - 1),
        "RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT": str(grpc),
        "RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT": str(grpc + range_size - 1),
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(claim(1)),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(claim(1)),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(claim(1)),
    }


def _free_range(size: int, avoid: set[int] | None = None) -> int:
    """The first port of `size` consecutive ports that nothing listens on right now.

    Drawn below the kernel's ephemeral range (and below Serve's default 30000+): a port from
    that range can be taken at any moment as the source port of an outgoing connection, and
    Ray opens many (seen: HAProxy failing with EADDRINUSE on such a port).
    """
    low, high = 20_000, min(30_000, _ephemeral_low())
    for _ in range(500):
        start = random.randrange(low, high - size)
        ports = range(start, start + size)
        if not (avoid and avoid.intersection(ports)) and all(map(_bindable, ports)):
            return start
    raise RuntimeError(f"no {size} consecutive free ports found in {low}-{high}")


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True
