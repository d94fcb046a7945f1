"""Ray Job: remove what is past its workspace's retention period (issue 18.4).

    ray job submit --working-dir . -- python -m jobs.retention [--dry-run] [--json]

Per workspace and data type (events, screenshots, archives, datasets, audit entries): drops
the monthly event partitions whose sessions are all past the period and deletes the rest of the
expired events session by session, removes screenshots and archives (objects, then rows),
withdraws datasets (files removed, models flagged) and deletes audit entries. Session rows stay
with their counters, quality and analysis, so trends and the dashboard are unchanged. Creates
the next months' event partitions. Safe to run twice or after a run killed midway. `--dry-run`
counts what would go and changes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence

from actors.retention.job import RetentionReport, run_retention
from actors.storage.objectstore import make_object_store
from actors.storage.postgres import connect_pool
from configs.settings import TracemillSettings
from jobs.entrypoint import job_main

__all__ = ["add_arguments", "main", "run", "run_job"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="count what would be removed; change nothing")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


async def run_job(settings: TracemillSettings, *, dry_run: bool = False) -> RetentionReport:
    pool = await connect_pool(settings.database, max_size=2)
    store = make_object_store(settings.object_store)
    try:
        return await run_retention(pool, store, settings.retention, dry_run=dry_run,
                                   progress=lambda line: print(line, flush=True))
    finally:
        await store.close()
        await pool.close()


def run(settings: TracemillSettings, args: argparse.Namespace) -> int:
    report = asyncio.run(run_job(settings, dry_run=args.dry_run))
    if args.json:
        print(json.dumps(report.as_dict()), flush=True)
    return 0


def _prepare(args: argparse.Namespace) -> Callable[[TracemillSettings], int]:
    return lambda settings: run(settings, args)


def main(argv: Sequence[str] | None = None) -> int:
    return job_main("retention", __doc__, argv, add_arguments=add_arguments, prepare=_prepare)


if __name__ == "__main__":
    sys.exit(main())
