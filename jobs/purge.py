"""Ray Job: purge deleted sessions and recorders whose grace period has passed (issue 18.3).

    ray job submit --working-dir . -- python -m jobs.purge [--grace-s N] [--json]

Removes their rows from PostgreSQL, their objects from the object store (raw uploads, painted
screenshots, contact sheets, archives) and their vision cache entries; withdraws the datasets
that used them (rows marked, files removed) and flags the models trained on those datasets.
Safe to run twice or after a run killed midway: it finishes what was started first. The grace
period is the deployment's `deletion.grace_period_s` unless --grace-s says otherwise (a smaller
value purges sooner: an operator's choice, written in the job's log).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence

from actors.deletion.purger import PurgeReport, purge
from actors.storage.objectstore import make_object_store
from actors.storage.postgres import connect_pool
from configs.settings import TracemillSettings
from jobs.entrypoint import job_main, whole_number

__all__ = ["add_arguments", "main", "run", "run_purge"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--grace-s", type=whole_number(0), default=None,
                        help="purge what was deleted at least this many seconds ago "
                             "(default: the deployment's deletion.grace_period_s)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


async def run_purge(settings: TracemillSettings, grace_s: int | None = None) -> PurgeReport:
    deletion = settings.deletion if grace_s is None else settings.deletion.model_copy(
        update={"grace_period_s": grace_s})
    pool = await connect_pool(settings.database, max_size=2)
    store = make_object_store(settings.object_store)
    try:
        return await purge(pool, store, deletion)
    finally:
        await store.close()
        await pool.close()


def run(settings: TracemillSettings, args: argparse.Namespace) -> int:
    report = asyncio.run(run_purge(settings, args.grace_s))
    if args.json:
        print(json.dumps(report.as_dict()), flush=True)
    else:
        d = report.as_dict()
        print(f"purged {d['sessions']} sessions ({d['objects']} objects), {d['recorders']} recorders;"
              f" {d['datasets_withdrawn']} datasets withdrawn, {d['models_flagged']} models flagged"
              f" in {d['seconds']} s", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return job_main("purge", __doc__, argv, add_arguments=add_arguments, run=run)


if __name__ == "__main__":
    sys.exit(main())
