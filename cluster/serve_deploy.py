"""Apply a Serve config file the way `serve deploy` does, with tracemill's runtime values."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

from ray import serve
from ray.serve._private import api as serve_api
from ray.serve.schema import ServeDeploySchema

from configs.settings import CONFIG_DIR, SettingsError, TracemillSettings, load_yaml

__all__ = ["DEFAULT_SERVE_CONFIG", "APP_NAME", "render_serve_config", "deploy_config", "wait_until_running"]

DEFAULT_SERVE_CONFIG = CONFIG_DIR / "serve.yaml"
APP_NAME = "tracemill"


def render_serve_config(
    settings: TracemillSettings, *, host: str, port: int, path: Path = DEFAULT_SERVE_CONFIG
) -> dict[str, Any]:
    """The config file with the app's `args` and the HTTP address filled in, validated."""
    config = copy.deepcopy(load_yaml(path))
    config.setdefault("http_options", {}).update({"host": host, "port": port})
    apps = [a for a in config.get("applications", []) if a.get("name") == APP_NAME]
    if len(apps) != 1:
        raise SettingsError(f"{path}: expected exactly one application named {APP_NAME!r}")
    apps[0]["args"] = settings.to_args()
    try:
        ServeDeploySchema.model_validate(config)
    except Exception as exc:  # noqa: BLE001 - Serve's schema errors, reported with the file name
        raise SettingsError(f"{path}: not a valid Serve config: {exc}") from None
    return config


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
