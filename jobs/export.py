"""Ray Job: build one export of everything kept about a recorder (issue 18.2).

    ray job submit --working-dir . -- python -m jobs.export --export-id ID [--json]

The export's row (migration 0020, queued by `POST /v1/recorders/{id}/export` or `tracemill
export`) names the recorder. The job writes one ZIP (manifest.json with counts and every file's
sha256; each session's row, stored redacted events, screenshots, analyses, scores, card, flags,
moderation decisions; the consent history; the datasets and models that used the sessions) to
a local file, session by session, logging counts every 10 sessions; uploads it under a key of
this run's own and then marks the row ready with that key. A rerun of a ready export does
nothing; of a failed or interrupted one, starts over without touching what a download reads.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Sequence
from dataclasses import asdict

from actors.crypto import keyring
from actors.export.runner import ExportResult, run_export
from actors.storage.objectstore import make_object_store
from actors.storage.postgres import connect_pool
from configs.settings import TracemillSettings
from jobs.entrypoint import job_main

__all__ = ["add_arguments", "main", "run", "run_export_job"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--export-id", type=uuid.UUID, required=True, help="the export's row (exports.export_id)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


async def run_export_job(settings: TracemillSettings, export_id: uuid.UUID) -> ExportResult:
    keyring.install(settings.encryption)  # events of an encrypted workspace are opened for the ZIP (18.5)
    pool = await connect_pool(settings.database, max_size=2)
    store = make_object_store(settings.object_store)
    try:
        return await run_export(pool, store, export_id)
    finally:
        await store.close()
        await pool.close()


def run(settings: TracemillSettings, args: argparse.Namespace) -> int:
    result = asyncio.run(run_export_job(settings, args.export_id))
    if args.json:
        print(json.dumps(asdict(result)), flush=True)
    else:
        print(f"export {result.export_id}: {result.status}, {result.bytes} bytes, sha256 {result.sha256},"
              f" counts {result.counts} in {result.seconds} s", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return job_main("export", __doc__, argv, add_arguments=add_arguments, run=run)


if __name__ == "__main__":
    sys.exit(main())
