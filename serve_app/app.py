"""The application builder named by `import_path` in configs/serve.yaml."""

from typing import Any

from ray.serve import Application

from configs.settings import TracemillSettings
from serve_app.ingress import Ingress

__all__ = ["build_app"]


def build_app(args: dict[str, Any]) -> Application:
    """Settings from the config's `args` (what `tracemill up` and `deploy` render), or, when
    `args` is empty (the KubeRay manifest, which must not carry secrets), from the
    environment of the process that builds the app (DATABASE_URL, TRACEMILL_S3_BUCKET …).

    Either way they are validated here, once, and travel to the replicas as a plain dict
    (secrets included): Serve turns bound pydantic models into dicts with SecretStr masked.
    """
    settings = TracemillSettings.build(args) if args else TracemillSettings.from_env()
    return Ingress.bind(settings.to_args())
