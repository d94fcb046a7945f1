"""Apply a Serve config file the way `serve deploy` does, with tracemill's runtime values, after
the session shards of the same settings (actors.ingest.shard_pool: drain, then replace).

What goes into the config is not secret: `args` are the public settings, and the runtime env
names the secrets file (configs/secrets.py). Ray's dashboard shows both to whoever asks.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any

from ray import serve
from ray.serve._private import api as serve_api
from ray.serve.schema import ServeDeploySchema

from actors.ingest.shard_pool import replace_shards, retire_shards, undo_replacement
from configs.secrets import SECRETS_FILE_ENV
from configs.settings import CONFIG_DIR, SettingsError, TracemillSettings, load_yaml

__all__ = ["DEFAULT_SERVE_CONFIG", "APP_NAME", "deploy_app", "render_serve_config", "deploy_config",
           "wait_until_running"]

log = logging.getLogger(__name__)

DEFAULT_SERVE_CONFIG = CONFIG_DIR / "serve.yaml"
APP_NAME = "tracemill"


def render_serve_config(
    settings: TracemillSettings, *, host: str, port: int, path: Path = DEFAULT_SERVE_CONFIG,
    secrets_file: Path | None = None,
) -> dict[str, Any]:
    """The config file with the app's `args` (no secret), the secrets file's name in its
    runtime env, and the HTTP address filled in, validated."""
    config = copy.deepcopy(load_yaml(path))
    config.setdefault("http_options", {}).update({"host": host, "port": port})
    apps = [a for a in config.get("applications", []) if a.get("name") == APP_NAME]
    if len(apps) != 1:
        raise SettingsError(f"{path}: expected exactly one application named {APP_NAME!r}")
    apps[0]["args"] = settings.public_args()
    if secrets_file is not None:
        runtime_env = apps[0].setdefault("runtime_env", {})
        runtime_env.setdefault("env_vars", {})[SECRETS_FILE_ENV] = str(secrets_file)
    try:
        ServeDeploySchema.model_validate(config)
    except Exception as exc:  # noqa: BLE001 - Serve's schema errors, reported with the file name
        raise SettingsError(f"{path}: not a valid Serve config: {exc}") from None
    return config


def deploy_app(settings: TracemillSettings, config: dict[str, Any], secrets_file: Path | None, *,
               timeout_s: float = 120) -> None:
    """Deploy `config` (rendered from `settings`) with shards of the same settings: the
    previous generation drained and this one created first, the app next, and the drained
    shards retired once no replica of the previous config is left (the sequence, and why no
    acked event is lost: actors.ingest.shard_pool). A failed deploy reopens the old shards."""
    old = replace_shards(settings, secrets_file)
    try:
        deploy_config(config, timeout_s=timeout_s)
    except BaseException:
        if old:
            log.warning("the deploy failed: the previous shards take work again")
            undo_replacement(settings, old)
        raise
    if old:
        wait_until_settled(APP_NAME, timeout_s=60)
        retire_shards(old)
        log.info("retired %d shards of the previous settings", len(old))


def wait_until_settled(app_name: str, *, timeout_s: float) -> None:
    """Until every replica of the app is RUNNING (those of a previous config have stopped);
    past the timeout, go on: a replica still stopping then sees its shard gone (503), and its
    client resends what was not acked."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        app = serve.status().applications.get(app_name)
        states = {str(getattr(s, "value", s)) for d in (app.deployments.values() if app else [])
                  for s, n in d.replica_states.items() if n}
        if states <= {"RUNNING"}:
            return
        time.sleep(0.5)
    log.warning("replicas of the previous config of %s still stopping after %.0f s", app_name, timeout_s)


def deploy_config(config: dict[str, Any], *, timeout_s: float = 120) -> None:
    schema = ServeDeploySchema.model_validate(config)
    client = serve_api.serve_start(
        http_options=schema.http_options.model_dump(),
        proxy_location=schema.proxy_location,
    )
    client.deploy_apps(schema, _blocking=False)
    for app in schema.applications:
        wait_until_running(app.name, timeout_s=timeout_s)


def wait_until_running(app_name: str, *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    status = None
    while time.monotonic() < deadline:
        app = serve.status().applications.get(app_name)
        status = app.status if app else None
        if status == "RUNNING":
            return
        if status == "DEPLOY_FAILED":
            raise RuntimeError(f"Serve application {app_name!r} failed to deploy: {app.message}")
        time.sleep(0.5)
    raise TimeoutError(f"Serve application {app_name!r} not running after {timeout_s:.0f}s (last: {status})")
