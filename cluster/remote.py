"""Working with a Ray cluster that tracemill did not start: `up --address`, `deploy`, `down`.

The cluster belongs to its operator: tracemill connects as a driver, adds or removes its Serve
application and its named actors (session shards, the vision service), and leaves everything
else alone. The settings that are not secret reach the actors through the Serve application's
`args` and the shards' arguments; the secrets through a 0600 file the processes are told
about, or the nodes' own environment (configs/secrets.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ray
from ray import serve

from actors.storage.postgres import apply_migrations
from actors.settings_registry import publish_settings, published_settings
from cluster.serve_deploy import APP_NAME, DEFAULT_SERVE_CONFIG, deploy_app, render_serve_config
from configs.secrets import write_secrets_file
from configs.settings import DatabaseSettings, SettingsError, TracemillSettings

__all__ = ["cluster_address", "cluster_settings", "connect", "database_settings", "deploy", "down",
           "remove_tracemill_actors", "settings_for_cluster"]

log = logging.getLogger(__name__)


def connect(address: str, namespace: str = "tracemill") -> None:
    """Join the cluster at `address` ("auto", "host:port" or "ray://…") as a driver.

    `ray start` turns token authentication on in Ray 2.60, and a driver must then say so
    (RAY_AUTH_MODE=token; the token is read from ~/.ray/auth_token). Set it when the token
    file is there and the operator has not chosen otherwise."""
    if ray.is_initialized():
        return
    if "RAY_AUTH_MODE" not in os.environ:
        _token_auth_if_token_exists()
    try:
        ray.init(address=address, namespace=namespace, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise SettingsError(f"cannot join the Ray cluster at {address!r}: {exc}") from None


def _token_auth_if_token_exists() -> None:
    # Ray reads the mode into its cached config when it is imported, so setting the variable
    # now is not enough; Ray's own helper sets it and refreshes that cache (private API,
    # hence the fallback to the variable alone, which works when set before `import ray`).
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:
        if (Path.home() / ".ray" / "auth_token").exists():
            os.environ["RAY_AUTH_MODE"] = "token"
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def settings_for_cluster(env: Mapping[str, str], objects_dir: Path | None = None) -> TracemillSettings:
    """Settings for a cluster whose nodes may be other machines: the database and the object
    store must be reachable from all of them, so nothing embedded is started here."""
    if not env.get("DATABASE_URL"):
        raise SettingsError("set DATABASE_URL: every node of the cluster must reach the same PostgreSQL")
    if not (env.get("TRACEMILL_KEY_PEPPER") or env.get("TRACEMILL_KEY_PEPPER_FILE")):
        # Checked here, before anything is deployed: replicas without it would fail only once started.
        raise SettingsError("set TRACEMILL_KEY_PEPPER (or TRACEMILL_KEY_PEPPER_FILE): API keys are stored as "
                            "HMACs under it, and every node and `tracemill keys` must use the same one")
    overrides: dict[str, Any] = {}
    if not env.get("TRACEMILL_S3_BUCKET"):
        if objects_dir is None:
            raise SettingsError("set TRACEMILL_S3_BUCKET (or --objects-dir for a directory every node shares)")
        overrides["object_store"] = {"kind": "local", "local_dir": str(objects_dir)}
    return TracemillSettings.from_env(env, overrides)


def deploy(settings: TracemillSettings, *, address: str, host: str, port: int,
           serve_config: Path = DEFAULT_SERVE_CONFIG, secrets_file: Path | None = None) -> None:
    """Apply the Serve config to the running cluster, as `serve deploy` does, after the shards
    of these settings (a deploy with changed settings drains and replaces them).

    The secrets go to a 0600 file (default: deploy-secrets.json in the state dir) that the app
    and the shards are told about; a node that does not have that file at that path (another
    machine, no shared directory) reads DATABASE_URL and the others from its own environment,
    as a KubeRay pod does (configs/secrets.py)."""
    secrets_file = secrets_file or deploy_secrets_file()
    config = render_serve_config(settings, host=host, port=port, path=serve_config,  # checked before joining
                                 secrets_file=secrets_file)
    asyncio.run(apply_migrations(settings.database.url.get_secret_value()))
    connect(address, settings.shards.namespace)
    write_secrets_file(secrets_file, settings.secret_values())
    publish_settings(settings, str(secrets_file))  # for Ray Job drivers (jobs/), which start without our env
    deploy_app(settings, config, secrets_file)
    from actors.retention.scheduler import ensure_scheduler  # the daily retention + purge (issue 18.4)

    ensure_scheduler(settings.schedule, settings.shards.namespace)


def deploy_secrets_file() -> Path:
    return Path(os.environ.get("TRACEMILL_STATE_DIR") or ".tracemill").resolve() / "deploy-secrets.json"


def remove_tracemill_actors(namespace: str = "tracemill") -> list[str]:
    """Kill the detached actors tracemill created (shards, vision service); they hold nothing
    that PostgreSQL does not, so the next deploy starts them afresh."""
    removed = []
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry.get("namespace") != namespace:
            continue
        try:
            ray.kill(ray.get_actor(entry["name"], namespace=namespace), no_restart=True)
            removed.append(entry["name"])
        except ValueError:  # already gone
            pass
    return removed


def down(address: str, namespace: str = "tracemill") -> list[str]:
    """Remove the application and tracemill's actors; the cluster itself keeps running."""
    connect(address, namespace)
    try:
        serve.delete(APP_NAME)
    except Exception as exc:  # noqa: BLE001 - not deployed is fine; say what happened
        log.info("no Serve application %s to delete (%s)", APP_NAME, type(exc).__name__)
    deploy_secrets_file().unlink(missing_ok=True)
    return remove_tracemill_actors(namespace)


def cluster_address(state_dir: str | None) -> str:
    """RAY_ADDRESS, else the `ray_address` in a `tracemill up` state dir's cluster.json, else auto."""
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    info = Path(state_dir or os.environ.get("TRACEMILL_STATE_DIR") or ".tracemill") / "cluster.json"
    if info.exists():
        return json.loads(info.read_text()).get("ray_address") or "auto"
    return "auto"


def cluster_settings(state_dir: str | None) -> TracemillSettings:
    """The settings of the running deployment, for CLI commands that run jobs' code here."""
    if not ray.is_initialized():
        connect(cluster_address(state_dir))
    return published_settings()


def database_settings(state_dir: str | None) -> DatabaseSettings:
    # Reading results needs only the database: no cluster when DATABASE_URL says where it is.
    if os.environ.get("DATABASE_URL"):
        return DatabaseSettings(url=os.environ["DATABASE_URL"])
    return cluster_settings(state_dir).database
