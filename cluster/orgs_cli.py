"""`tracemill orgs list|create` and `tracemill workspaces list|create`: the operator's view,
straight on the database (as `tracemill keys` is). `orgs create` prints an owner key for the new
organisation's default workspace, once; its owner makes the other keys and workspaces over the
API (POST /v1/keys, POST /v1/workspaces) or with `tracemill keys create --org --workspace --role`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from typing import Any

from actors import auth
from actors.errors import NotFound
from actors.storage import orgs_repo
from cluster.commands import Entry

__all__ = ["ORGS", "WORKSPACES", "org_of"]


def _common(parser: argparse.ArgumentParser) -> Any:
    parser.add_argument("--state-dir")
    return parser.add_subparsers(dest="orgs_command", required=True)


def _org_arguments(parser: argparse.ArgumentParser) -> None:
    sub = _common(parser)
    sub.add_parser("list", help="every organisation with its number of workspaces")
    create = sub.add_parser("create", help="a new organisation, its default workspace and an owner key (shown once)")
    create.add_argument("name")


def _workspace_arguments(parser: argparse.ArgumentParser) -> None:
    sub = _common(parser)
    listing = sub.add_parser("list", help="an organisation's workspaces")
    listing.add_argument("--org", default=str(auth.DEFAULT_ORG_ID), help="organisation id or name (default: the default one)")
    create = sub.add_parser("create", help="a new workspace in an organisation")
    create.add_argument("name")
    create.add_argument("--org", default=str(auth.DEFAULT_ORG_ID), help="organisation id or name")


async def org_of(pool: Any, ref: str) -> uuid.UUID:
    """An organisation by id or name."""
    try:
        return uuid.UUID(ref)
    except ValueError:
        pass
    org_id = await pool.fetchval("SELECT org_id FROM organizations WHERE name = $1", ref)
    if org_id is None:
        raise NotFound(f"no organisation named {ref!r}")
    return org_id


async def _run(args: argparse.Namespace, what: str) -> int:
    from cluster.cli import _database, _state_dir
    from cluster.keys_cli import _pepper

    state_dir = _state_dir(args.state_dir)
    async with _database(state_dir) as pool:
        if what == "orgs" and args.orgs_command == "list":
            print(f"{'org id':36}  {'workspaces':10}  name")
            for row in await orgs_repo.list_orgs(pool):
                print(f"{str(row['org_id']):36}  {row['workspaces']:<10}  {row['name']}")
        elif what == "orgs":
            async with pool.acquire() as conn, conn.transaction():
                org_id, workspace_id = await orgs_repo.create_org(conn, args.name)
                key_id, key = await auth.create_key(conn, role="owner", org_id=org_id, workspace_id=workspace_id,
                                                    name="owner", pepper=_pepper(state_dir))
            print(f"org id        {org_id}\nworkspace id  {workspace_id}\nowner key id  {key_id}\nowner key     {key}")
            print("The key is shown once; only an HMAC of it is stored.", file=sys.stderr)
        elif args.orgs_command == "list":
            print(f"{'workspace id':36}  {'default':7}  name")
            for row in await orgs_repo.list_workspaces(pool, await org_of(pool, args.org)):
                print(f"{str(row['workspace_id']):36}  {'yes' if row['is_default'] else '':7}  {row['name']}")
        else:
            row = await orgs_repo.create_workspace(pool, await org_of(pool, args.org), args.name)
            print(f"workspace id  {row['workspace_id']}\nname          {row['name']}")
    return 0


ORGS = Entry(_org_arguments, lambda args: asyncio.run(_run(args, "orgs")))
WORKSPACES = Entry(_workspace_arguments, lambda args: asyncio.run(_run(args, "workspaces")))
