"""The deployed settings, published in the Ray cluster's internal key-value store, secrets left out.

A Ray Job's driver (`ray job submit -- python -m jobs.build_dataset …`) starts in a process the
job manager spawns, with none of the environment `tracemill up` or `tracemill deploy` had. So
the deploying side publishes the validated settings next to the Serve app, and a driver reads
them back after `ray.init()`: jobs need no flags to find the database and the object store.

Any driver or job of the cluster can read this store, so it holds only `public_args()` and the
*name* of the deployment's secrets file (configs/secrets.py): a driver on a node that has the
file reads the secrets from it (0600, the deploying user's), any other from its environment.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from ray.experimental import internal_kv

from actors.crypto import keyring
from actors.errors import ConfigError
from configs.settings import CLUSTER_ADDRESS_ENV, SettingsError, TracemillSettings

__all__ = ["CLUSTER_ADDRESS_ENV", "KV_KEY", "KV_NAMESPACE", "dashboard_url", "publish_settings",
           "published_settings"]

KV_KEY = b"tracemill/settings"
KV_NAMESPACE = "tracemill"


def publish_settings(settings: TracemillSettings, secrets_file: str | None) -> None:
    """Store the public settings and the secrets file's name for job drivers; needs a
    connected Ray (`ray.init` done)."""
    value = {"settings": settings.public_args(), "secrets_file": secrets_file}
    internal_kv._internal_kv_put(KV_KEY, json.dumps(value).encode(), overwrite=True, namespace=KV_NAMESPACE)


def published_settings(env: Mapping[str, str] | None = None) -> TracemillSettings:
    """The settings a job driver runs with: what the deployment published on this cluster with
    the secrets this process is given, else (a cluster deployed without tracemill's CLI, e.g. a
    KubeRay RayService) the documented environment variables (DATABASE_URL, TRACEMILL_S3_BUCKET …)."""
    raw = internal_kv._internal_kv_get(KV_KEY, namespace=KV_NAMESPACE)
    try:
        if raw is None:
            return _with_keyring(TracemillSettings.from_env(env))
        published = json.loads(raw)
        return _with_keyring(TracemillSettings.with_secrets(published["settings"], env, published.get("secrets_file")))
    except SettingsError as exc:
        if raw is None:
            raise ConfigError("no tracemill deployment found on this Ray cluster (run `tracemill up` or "
                              "`tracemill deploy` first, or set DATABASE_URL and TRACEMILL_S3_BUCKET): "
                              f"{exc}") from None
        raise ConfigError(f"the published settings do not validate here: {exc}") from None


def dashboard_url() -> str:
    """The Ray dashboard (Jobs API) address of the connected cluster."""
    from ray._private.services import get_webui_url_from_internal_kv

    url = get_webui_url_from_internal_kv()
    if not url:
        raise ConfigError("this Ray cluster runs no dashboard, so Ray Jobs cannot be submitted")
    return url if url.startswith("http") else f"http://{url}"


def _with_keyring(settings: TracemillSettings) -> TracemillSettings:
    """A job driver reads events (dataset build, export): it opens encrypted ones with the
    keyring of its settings' KEK (issue 18.5)."""
    keyring.install(settings.encryption)
    return settings
