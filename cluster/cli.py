"""The `tracemill` command: one table of subcommands (COMMANDS), each imported when chosen.

Adding a command is one entry: its name, its help, and where its `add_arguments(parser)` and
`run(args)` live (cluster/commands.py). `tracemill --help` imports none of them and never Ray.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, AsyncIterator, Sequence

from actors.errors import TracemillError
from cluster.commands import Command, Entry, add_commands, run_chosen
from configs.settings import SettingsError

__all__ = ["COMMANDS", "build_parser", "main"]

log = logging.getLogger("tracemill")

COMMANDS: dict[str, Command] = {
    "up": Command("run a local tracemill in the foreground (Ctrl-C stops it)", "cluster.cli:UP"),
    "deploy": Command("apply the Serve config to a running Ray cluster and exit", "cluster.cli:DEPLOY"),
    "down": Command("remove tracemill's application and actors; the cluster stays", "cluster.cli:DOWN"),
    "status": Command("what a running `tracemill up` is doing", "cluster.cli:STATUS"),
    "keys": Command("API keys: generate, create, list, revoke, rotate", "cluster.keys_cli"),
    "orgs": Command("organisations: list, create (with an owner key)", "cluster.orgs_cli:ORGS"),
    "workspaces": Command("an organisation's workspaces: list, create", "cluster.orgs_cli:WORKSPACES"),
    "accounts": Command("people's accounts: create, list, invite", "cluster.accounts_cli"),
    "loadgen": Command("drive WebSocket load at an endpoint", "cluster.bench.loadgen"),
    "bench": Command("benchmarks that print figures", "cluster.bench"),
    "dataset": Command("build fine-tuning datasets from ready sessions", "cluster.training_cli:DATASET"),
    "finetune": Command("fine-tune models on built datasets", "cluster.training_cli:FINETUNE"),
    "eval": Command("evaluate models on a dataset's validation split", "cluster.eval_cli"),
    "purge": Command("remove deleted sessions and recorders past their grace period", "cluster.purge_cli"),
    "retention": Command("remove what is past its workspace's retention period", "cluster.retention_cli"),
    "export": Command("a ZIP of everything kept about a recorded person", "cluster.export_cli"),
    "demo": Command("replay a recorded browser session through a running endpoint", "cluster.demo.replay"),
}


def _state_dir(value: str | None) -> Path:
    return Path(value or os.environ.get("TRACEMILL_STATE_DIR") or ".tracemill").resolve()


def _port(value: str) -> int:
    port = int(value)
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError("a port is 1-65535")
    return port


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tracemill", description="Recorded browser sessions to training data and fine-tuned web-agent models.")
    add_commands(parser, COMMANDS, dest="command")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("pgserver", "httpx"):  # they narrate every pg_ctl call and HTTP request
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        return run_chosen(args)
    except (SettingsError, TracemillError) as exc:
        print(f"tracemill: {exc}", file=sys.stderr)
        return 2


# -- up, deploy, down ---------------------------------------------------------------------------

def _up_arguments(up: argparse.ArgumentParser) -> None:
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=_port, default=8000)
    up.add_argument("--state-dir", help="where PostgreSQL and objects live (default ./.tracemill)")
    up.add_argument("--num-cpus", type=int, default=None, help="CPUs Ray may use (default: cores + 1)")
    up.add_argument("--address", help="join this Ray cluster (auto, host:port) instead of starting one")


def _deploy_arguments(deploy: argparse.ArgumentParser) -> None:
    deploy.add_argument("--address", default="auto", help="the cluster (default: auto)")
    deploy.add_argument("--host", default="0.0.0.0", help="where Serve's HTTP proxy listens on each node")
    deploy.add_argument("--port", type=_port, default=8000)
    deploy.add_argument("--objects-dir", type=Path, help="a directory all nodes share (else TRACEMILL_S3_BUCKET)")


def _down_arguments(down: argparse.ArgumentParser) -> None:
    down.add_argument("--address", default="auto")


def _up(args: argparse.Namespace) -> int:
    from cluster.local import LocalStack

    stack = LocalStack(_state_dir(args.state_dir), host=args.host, port=args.port, num_cpus=args.num_cpus,
                       address=args.address)
    stop = threading.Event()
    try:
        key = stack.start(os.environ.get("TRACEMILL_BOOTSTRAP_API_KEY"))
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        print(_banner(stack, key), flush=True)
        while not stop.wait(1.0):
            pass
        print("tracemill: stopping…", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
    print("tracemill: stopped", flush=True)
    return 0


def _deploy(args: argparse.Namespace) -> int:
    from cluster import remote

    settings = remote.settings_for_cluster(os.environ, args.objects_dir)
    remote.deploy(settings, address=args.address, host=args.host, port=args.port)
    print(f"tracemill deployed: http://{args.host}:{args.port} on the cluster at {args.address}")
    print("Make a key with `tracemill keys create` (it uses DATABASE_URL and TRACEMILL_KEY_PEPPER).")
    return 0


def _down(args: argparse.Namespace) -> int:
    from cluster import remote

    removed = remote.down(args.address)
    print(f"tracemill removed from the cluster at {args.address} (actors: {', '.join(removed) or 'none'})")
    return 0


def _banner(stack: Any, key: str) -> str:
    return "\n".join([
        "",
        "tracemill is up",
        f"  endpoint   {stack.endpoint}",
        f"  API docs   {stack.endpoint}/docs",
        f"  API key    {key}",
        f"  dashboard  {stack.endpoint}/dashboard#key={key}",
        f"  Ray        {stack.dashboard_url or '-'} (the Ray dashboard and Jobs API)",
        f"  state      {stack.state_dir}",
        "Press Ctrl-C to stop.",
    ])


@contextlib.asynccontextmanager
async def _database(state_dir: Path) -> AsyncIterator[Any]:
    """A pool on DATABASE_URL, or on the state dir's embedded PostgreSQL (started if needed)."""
    from actors.storage.postgres import apply_migrations, connect_pool
    from cluster.embedded_postgres import EmbeddedPostgres
    from configs.settings import DatabaseSettings

    url = os.environ.get("DATABASE_URL")
    embedded = None
    if not url:
        embedded = EmbeddedPostgres(state_dir / "pgdata")
        was_running = embedded.is_running()
        url = embedded.start()
    await apply_migrations(url)
    pool = await connect_pool(DatabaseSettings(url=url))
    try:
        yield pool
    finally:
        await pool.close()
        if embedded is not None and not was_running:
            embedded.stop()


def _status_arguments(status: argparse.ArgumentParser) -> None:
    status.add_argument("--state-dir")


async def _status(args: argparse.Namespace) -> int:
    import httpx

    state_dir = _state_dir(args.state_dir)
    info_file = state_dir / "cluster.json"
    if not info_file.exists():
        print(f"tracemill is not running from {state_dir} (no cluster.json)")
        return 1
    info = json.loads(info_file.read_text())
    async with httpx.AsyncClient(timeout=5) as client:
        health = await _probe(client, info["endpoint"] + "/healthz")
        ready = await _probe(client, info["endpoint"] + "/readyz")
    print(f"endpoint   {info['endpoint']}  (pid {info['pid']})")
    print(f"healthz    {health}")
    print(f"readyz     {ready}")
    for line in await asyncio.to_thread(_cluster_lines, info.get("ray_address")):
        print(line)
    async with _database(state_dir) as pool:
        rows = await pool.fetch("SELECT status, count(*) AS n, sum(event_count) AS events FROM sessions GROUP BY status")
        keys = await pool.fetchval("SELECT count(*) FROM api_keys WHERE revoked_at IS NULL")
    counts = {r["status"]: r["n"] for r in rows}
    for r in rows:
        print(f"sessions   {r['status']:11} {r['n']:8} sessions {r['events'] or 0:12} events")
    print(f"open       {counts.get('recording', 0)} sessions recording")
    print(f"backlog    {counts.get('finalizing', 0)} finalisations unfinished")
    print(f"api keys   {keys} active")
    return 0 if ready.startswith("200") else 1


def _cluster_lines(address: str | None) -> list[str]:
    """The Ray cluster's nodes and the Serve application's state and replicas, as a driver
    sees them; a cluster that does not answer is reported, not fatal."""
    if not address:
        return ["cluster    unknown (no Ray address recorded)"]
    from cluster import remote

    try:
        remote.connect(address)
        import ray
        from ray import serve

        nodes = [n for n in ray.nodes() if n.get("Alive")]
        lines = [f"nodes      {len(nodes)} alive"]
        for node in nodes:
            cpus = node.get("Resources", {}).get("CPU", 0)
            lines.append(f"  node     {node.get('NodeManagerAddress')}  {cpus:g} CPU")
        app = serve.status().applications.get("tracemill")
        if app is None:
            return [*lines, "serve      application tracemill not deployed"]
        lines.append(f"serve      tracemill {_name(app.status)}")
        for name, dep in app.deployments.items():
            replicas = ", ".join(f"{_name(state).lower()} {n}" for state, n in dep.replica_states.items())
            lines.append(f"  {name:8} {_name(dep.status)}  replicas: {replicas or 'none'}")
        return lines
    except Exception as exc:  # noqa: BLE001 - status reports what it can
        return [f"cluster    unreachable at {address} ({type(exc).__name__})"]


def _name(value: Any) -> str:
    """Serve's status enums print as 'Class.MEMBER' on Python 3.11; show the bare value."""
    return str(getattr(value, "value", value))


async def _probe(client: Any, url: str) -> str:
    import httpx

    try:
        response = await client.get(url)
    except httpx.HTTPError as exc:
        return f"unreachable ({type(exc).__name__})"
    return f"{response.status_code} {response.text[:200]}"


UP = Entry(_up_arguments, _up)
DEPLOY = Entry(_deploy_arguments, _deploy)
DOWN = Entry(_down_arguments, _down)
STATUS = Entry(_status_arguments, lambda args: asyncio.run(_status(args)))


if __name__ == "__main__":
    sys.exit(main())
