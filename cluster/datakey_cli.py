"""`tracemill keys rotate-data-key --workspace W`: a new data key for the workspace, its stored
events re-encrypted under it in batches while ingest and reads go on, the old keys retired
(actors/crypto/rotation.py). Prints progress counts.

The KEK comes from this process's environment (TRACEMILL_ENCRYPTION_KEK(_FILE) or
TRACEMILL_ENCRYPTION_KMS_KEY_ID, as given to the deployment), else from the running
deployment's settings and secrets file; the database from DATABASE_URL or the state dir.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """The `rotate-data-key` subcommand of `tracemill keys`."""
    rotate = sub.add_parser("rotate-data-key", help="a new data key for a workspace; its stored events are "
                                                    "re-encrypted in batches without downtime, the old key retired")
    rotate.add_argument("--workspace", required=True, type=uuid.UUID, help="workspace id")
    rotate.add_argument("--settle-s", type=float, default=None,
                        help="wait between the two passes (default: encryption.active_key_ttl_s + 1)")


def _encryption_settings(state_dir: Any) -> Any:
    from configs.base import validated
    from configs.encryption import EncryptionSettings, encryption_from_env
    from configs.settings import secret_from_env

    given = encryption_from_env(os.environ, secret_from_env(os.environ, "TRACEMILL_ENCRYPTION_KEK"))
    if given.get("kek") or given.get("kms_key_id"):
        return validated(EncryptionSettings, given)
    from cluster.remote import cluster_settings

    return cluster_settings(str(state_dir)).encryption


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from actors.crypto.keyring import install
    from actors.crypto.rotation import Rotation, rotate_data_key
    from cluster.cli import _database, _state_dir

    state_dir = _state_dir(args.state_dir)
    keyring = install(_encryption_settings(state_dir))
    if keyring is None:
        print("no key-encryption key: set TRACEMILL_ENCRYPTION_KEK (or _FILE) or TRACEMILL_ENCRYPTION_KMS_KEY_ID",
              file=sys.stderr)
        return 2

    def progress(done: Rotation) -> None:
        print(f"pass {done.passes}: {done.re_encrypted} of {done.rows} rows re-encrypted", flush=True)

    async with _database(state_dir) as pool:
        if await pool.fetchval("SELECT 1 FROM workspaces WHERE workspace_id = $1", args.workspace) is None:
            print(f"no workspace {args.workspace}", file=sys.stderr)
            return 2
        done = await rotate_data_key(pool, keyring, args.workspace, progress=progress, settle_s=args.settle_s)
    print(f"workspace {done.workspace_id}: data key {done.new_key_id} is current; "
          f"{done.re_encrypted} of {done.rows} rows re-encrypted in {done.passes} passes; "
          f"retired keys: {', '.join(map(str, done.retired_key_ids)) or 'none'}")
    return 0
