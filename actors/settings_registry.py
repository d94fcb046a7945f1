"""The deployed settings, published in the Ray cluster's internal key-value store.

A Ray Job's driver (`ray job submit -- python -m jobs.build_dataset …`) starts in a process the
job manager spawns, with none of the environment `tracemill up` or `tracemill deploy` had. So
the deploying side publishes the validated settings next to the Serve app, and a driver reads
them back after `ray.init()`: jobs need no flags to find the database and the object store.
The value holds the database DSN, as the Serve config's args already do: whoever can read the
cluster's GCS can read both. An explicit DATABASE_URL in the driver's environment wins.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from ray.experimental import internal_kv

from actors.errors import ConfigError
from configs.settings import SettingsError, TracemillSettings

__all__ = ["CLUSTER_ADDRESS_ENV", "dashboard_url", "job_cluster_address", "publish_settings",
           "published_settings"]

# Ray's job supervisor gives each driver RAY_ADDRESS from /tmp/ray/ray_current_cluster: the
# cluster most recently started on the machine, which need not be the one running the job (two
# clusters on one machine: seen with the test suite). Submitters that know better set this.
CLUSTER_ADDRESS_ENV = "TRACEMILL_RAY_ADDRESS"


def job_cluster_address() -> str:
    return os.environ.get(CLUSTER_ADDRESS_ENV) or os.environ.get("RAY_ADDRESS") or "auto"


_KEY = b"tracemill/settings"
_NAMESPACE = "tracemill"


def publish_settings(settings: TracemillSettings) -> None:
    """Store the settings for job drivers; needs a connected Ray (`ray.init` done)."""
    internal_kv._internal_kv_put(_KEY, json.dumps(settings.to_args()).encode(), overwrite=True,
                                 namespace=_NAMESPACE)


def published_settings(env: Mapping[str, str]) -> TracemillSettings:
    """The settings a job driver runs with: what the deployment published on this cluster,
    else (a cluster deployed without tracemill's CLI, e.g. a KubeRay RayService) the documented
    environment variables (DATABASE_URL, TRACEMILL_S3_BUCKET, …)."""
    raw = internal_kv._internal_kv_get(_KEY, namespace=_NAMESPACE)
    if raw is None:
        if not env.get("DATABASE_URL"):
            raise ConfigError("no tracemill deployment found on this Ray cluster (run `tracemill up` "
                              "or `tracemill deploy` first, or set DATABASE_URL and TRACEMILL_S3_BUCKET)")
        return TracemillSettings.from_env(env)
    try:
        return TracemillSettings.build(json.loads(raw))
    except SettingsError as exc:
        raise ConfigError(f"the published settings do not validate: {exc}") from None


def dashboard_url() -> str:
    """The Ray dashboard (Jobs API) address of the connected cluster."""
    from ray._private.services import get_webui_url_from_internal_kv

    url = get_webui_url_from_internal_kv()
    if not url:
        raise ConfigError("this Ray cluster runs no dashboard, so Ray Jobs cannot be submitted")
    return url if url.startswith("http") else f"http://{url}"
