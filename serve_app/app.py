"""The typed application builder named by `import_path` in configs/serve.yaml."""

# No `from __future__ import annotations` here: Serve inspects the builder's annotation at
# run time to validate `args` into TracemillSettings, and a string annotation defeats that.
from ray.serve import Application

from configs.settings import TracemillSettings
from serve_app.ingress import Ingress

__all__ = ["build_app"]


def build_app(args: TracemillSettings) -> Application:
    """Serve validates `args` from the config file into TracemillSettings before this runs.

    The settings travel to the replicas as a plain dict (secrets included) and are validated
    again there: Serve turns bound pydantic models into dicts, with SecretStr masked.
    """
    return Ingress.bind(args.to_args())
