"""The one runner behind every job's `python -m jobs.<name>`: parse the arguments, validate
what needs no cluster (config files, flags), join the Ray cluster, load its settings, and
report errors as one line and an exit code instead of a traceback."""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from actors.errors import ConfigError, InvalidInput, MalformedInput, NotFound, TracemillError
from actors.storage.postgres import connect_pool
from configs.settings import SettingsError, TracemillSettings, job_cluster_address

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "Prepare", "job_main", "join_cluster", "run_entrypoint",
           "stored_row", "whole_number"]

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
log = logging.getLogger("tracemill.jobs")

# What a job does before the cluster: validate its arguments and files, and return the work to
# run with the deployment's settings. Bad settings therefore cost no cluster join.
Prepare = Callable[[argparse.Namespace], Callable[[TracemillSettings], int]]


def join_cluster() -> TracemillSettings:
    """Connect to the cluster this driver runs on (a Ray Job's driver finds it by itself;
    elsewhere RAY_ADDRESS or a local cluster) and return the deployment's settings."""
    import ray  # here, not above: `tracemill purge --help` and friends import the jobs without Ray

    from actors.settings_registry import published_settings

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


def job_main(name: str, doc: str | None, argv: Sequence[str] | None, *,
             add_arguments: Callable[[argparse.ArgumentParser], None], prepare: Prepare | None = None,
             run: Callable[[TracemillSettings, argparse.Namespace], int] | None = None,
             check: Callable[[argparse.Namespace], str | None] | None = None) -> int:
    """A job's whole `main`: its options (usage errors exit 2 as argparse does; `check` names
    a combination that makes no sense), then `prepare` and its work under run_entrypoint.
    A job with nothing to validate before the cluster gives `run(settings, args)` instead."""
    if (prepare is None) == (run is None):
        raise TypeError("give job_main either prepare or run")
    if prepare is None:
        assert run is not None
        prepare = functools.partial(_run_with_args, run)
    parser = argparse.ArgumentParser(prog=f"python -m jobs.{name}", description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    if check is not None and (problem := check(args)):
        parser.error(problem)

    def go() -> int:
        work = prepare(args)
        return work(join_cluster())

    return run_entrypoint(name, go)


def _run_with_args(run: Callable[[TracemillSettings, argparse.Namespace], int],
                   args: argparse.Namespace) -> Callable[[TracemillSettings], int]:
    return lambda settings: run(settings, args)


def whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least `minimum`."""
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}")
        return number
    return parse


def stored_row(settings: TracemillSettings, fetch: Callable[[Any, uuid.UUID], Awaitable[Any]],
               row_id: uuid.UUID, what: str) -> Any:
    """One row a job resumes from (a queued build, a fine-tune), or NotFound naming it."""
    async def read() -> Any:
        pool = await connect_pool(settings.database, max_size=1)
        try:
            return await fetch(pool, row_id)
        finally:
            await pool.close()

    row = asyncio.run(read())
    if row is None:
        raise NotFound(f"no {what} {row_id}")
    return row
