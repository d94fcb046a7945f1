"""`tracemill export`: a copy of everything kept about a recorded person, as one ZIP.

    tracemill export --recorder ID [--out FILE] [--state-dir DIR]

Queues the export (a row, audited export.start by the operator), runs the export job's code
(jobs/export.py) in this process with the running deployment's settings, printing its progress,
then downloads the ZIP from the object store to FILE (default ./export-<recorder>.zip; audited
export.download). The same export is downloadable over the API: GET /v1/exports/{id}/download.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
import uuid
from pathlib import Path

from actors.accounts.audit import Actor, audit
from actors.errors import NotFound, TracemillError
from actors.storage import export_repo
from configs.settings import TracemillSettings

__all__ = ["add_arguments", "export_recorder", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recorder", type=uuid.UUID, required=True, help="the recorder (person) to export")
    parser.add_argument("--out", type=Path, help="where to write the ZIP (default ./export-<recorder>.zip)")
    parser.add_argument("--state-dir", help="a `tracemill up` state dir whose cluster.json names the cluster "
                                            "(default ./.tracemill)")


async def export_recorder(settings: TracemillSettings, recorder_id: uuid.UUID, out: Path) -> dict[str, object]:
    """Queue, run and download one export; returns the result (ids, size, sha256, counts)."""
    from actors.crypto import keyring
    from actors.export.runner import run_export
    from actors.storage.objectstore import make_object_store
    from actors.storage.postgres import connect_pool

    keyring.install(settings.encryption)  # events of an encrypted workspace are opened for the ZIP (18.5)
    pool = await connect_pool(settings.database, max_size=2)
    store = make_object_store(settings.object_store)
    try:
        recorder = await export_repo.live_recorder_by_id(pool, recorder_id)
        if recorder is None:
            raise NotFound(f"no recorder {recorder_id} (unknown or deleted)")
        actor = Actor("cli", getpass.getuser(), recorder["org_id"], recorder["workspace_id"])
        export_id = uuid.uuid4()
        async with pool.acquire() as conn, conn.transaction():
            await export_repo.insert(conn, export_id, recorder["org_id"], recorder["workspace_id"], recorder_id,
                                     f"cli:{actor.actor_id}")
            await audit(conn, "export.start", actor, target=str(recorder_id), details={"export_id": str(export_id)})
        print(f"export {export_id} of recorder {recorder_id}: running", flush=True)
        result = await run_export(pool, store, export_id)
        assert result.object_key is not None
        data = await store.get(result.object_key)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".part")
        tmp.write_bytes(data)
        tmp.replace(out)
        await audit(pool, "export.download", actor, target=str(export_id),
                    details={"what": "recorder_export", "recorder_id": str(recorder_id), "bytes": len(data)})
        return {"export_id": str(export_id), "out": str(out), "bytes": result.bytes, "sha256": result.sha256,
                "counts": result.counts, "seconds": result.seconds}
    finally:
        await store.close()
        await pool.close()


def run(args: argparse.Namespace) -> int:
    from cluster.remote import cluster_settings

    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(message)s")
    out = args.out or Path(f"export-{args.recorder}.zip")
    try:
        done = asyncio.run(export_recorder(cluster_settings(args.state_dir), args.recorder, out))
    except TracemillError as exc:
        print(f"export: {exc}", file=sys.stderr, flush=True)
        return 2 if isinstance(exc, NotFound) else 1
    print(f"wrote {done['out']}: {done['bytes']} bytes, sha256 {done['sha256']}, {done['counts']}"
          f" in {done['seconds']} s", flush=True)
    return 0
