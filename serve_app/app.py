"""The application builder named by `import_path` in configs/serve.yaml."""

from typing import Any

from ray.serve import Application

from actors.ingest.shard_pool import create_shards
from configs.settings import TracemillSettings
from serve_app.ingress import Ingress
from serve_app.model_server import ModelServer

__all__ = ["build_app"]


def build_app(args: dict[str, Any]) -> Application:
    """Settings from the config's `args`: the public settings `tracemill up` and `deploy`
    render, completed with the secrets this process's environment gives (configs/secrets.py);
    validated here, once. The replicas get the public part only (Serve keeps bound arguments
    in its checkpoint in Ray's KV store) and complete it the same way.

    `args` empty is the KubeRay manifest, which must carry no secret: the settings come from
    the pods' environment (DATABASE_URL, TRACEMILL_S3_BUCKET …). No tracemill deployer runs
    there, so this builder creates the shards of those settings where missing — the one case
    where `up`/`deploy` (actors.ingest.shard_pool) do not; a changed manifest then starts a
    new generation without draining the old one, which stays until `tracemill down`.
    """
    if args:
        settings = TracemillSettings.with_secrets(args)
    else:
        settings = TracemillSettings.from_env()
        create_shards(settings, secrets_file=None)
    public = settings.public_args()
    return Ingress.bind(public, ModelServer.bind(public))
