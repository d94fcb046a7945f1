"""What every job entrypoint does first: join the Ray cluster, load its settings, and report
errors as one line and an exit code instead of a traceback."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

import ray

from actors.errors import ConfigError, InvalidInput, MalformedInput, NotFound, TracemillError
from actors.settings_registry import published_settings
from configs.settings import SettingsError, TracemillSettings, job_cluster_address

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "join_cluster", "run_entrypoint"]

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
log = logging.getLogger("tracemill.jobs")


def join_cluster() -> TracemillSettings:
    """Connect to the cluster this driver runs on (a Ray Job's driver finds it by itself;
    elsewhere RAY_ADDRESS or a local cluster) and return the deployment's settings."""
    if not ray.is_initialized():
        ray.init(address=job_cluster_address(), namespace="tracemill",
                 logging_level=logging.WARNING, log_to_driver=True)
    return published_settings()


def run_entrypoint(name: str, main: Callable[[], int]) -> int:
    """Run a job's main: progress goes to stdout (the Ray job's log), a clear error line to
    stderr with exit code 2 for bad input or settings and 1 for a failed run."""
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("httpx", "openai", "botocore", "urllib3"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        return main()
    except (SettingsError, TracemillError) as exc:
        bad_input = isinstance(exc, SettingsError | MalformedInput | InvalidInput | ConfigError | NotFound)
        print(f"{name}: {exc}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT if bad_input else EXIT_FAILED

