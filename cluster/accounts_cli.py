"""`tracemill accounts create|list|invite`: people's accounts, straight on the database (as
`tracemill keys` is). The first owner of a deployment is made here; everyone after is invited
over the API (POST /v1/invitations) or with `accounts invite`.

A password is never an argument (it would show in `ps` and the shell history): it is asked for
on the terminal, or read from standard input with `--password-stdin` (scripts).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from typing import Any

from pydantic import SecretStr

from actors import auth
from actors.accounts.audit import Actor
from actors.accounts.people import People
from actors.storage import accounts_repo, orgs_repo
from cluster.orgs_cli import org_of
from configs.accounts import AccountSettings
from configs.settings import AuthSettings

__all__ = ["add_arguments", "run"]

ROLES = ("owner", "admin", "reviewer", "analyst", "recorder")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir")
    sub = parser.add_subparsers(dest="accounts_command", required=True)
    create = sub.add_parser("create", help="an account with a role in a workspace (the password is asked for)")
    create.add_argument("email")
    create.add_argument("--role", choices=ROLES, default="owner")
    create.add_argument("--org", default=str(auth.DEFAULT_ORG_ID), help="organisation id or name")
    create.add_argument("--workspace", help="workspace id or name (default: the organisation's default)")
    create.add_argument("--name", default="", help="display name")
    create.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    listing = sub.add_parser("list", help="accounts and their memberships (never a password hash)")
    listing.add_argument("--org", help="only members of this organisation (id or name)")
    invite = sub.add_parser("invite", help="an invitation token into a workspace (shown once)")
    invite.add_argument("email")
    invite.add_argument("--role", choices=ROLES, required=True)
    invite.add_argument("--org", default=str(auth.DEFAULT_ORG_ID), help="organisation id or name")
    invite.add_argument("--workspace", help="workspace id or name (default: the organisation's default)")


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password (12+ characters, not a common one): ")
    if getpass.getpass("again: ") != first:
        raise SystemExit("the two passwords differ")
    return first


def _people(state_dir: Any) -> People:
    from cluster.keys_cli import _pepper  # the deployment's pepper, or the local stack's

    auth_settings = AuthSettings(pepper=SecretStr(_pepper(state_dir).decode("utf-8")))
    return People.build(AccountSettings(), auth_settings)


async def _place(pool: Any, args: argparse.Namespace) -> tuple[Any, Any]:
    org_id = await org_of(pool, args.org)
    if args.workspace:
        return org_id, await orgs_repo.workspace_of_org(pool, org_id, args.workspace)
    return org_id, await orgs_repo.default_workspace(pool, org_id)


async def _run(args: argparse.Namespace) -> int:
    from cluster.cli import _database, _state_dir

    state_dir = _state_dir(args.state_dir)
    actor = Actor("cli", getpass.getuser())
    async with _database(state_dir) as pool:
        if args.accounts_command == "list":
            org_id = await org_of(pool, args.org) if args.org else None
            print(f"{'account id':36}  {'email':32}  memberships (workspace:role)")
            for row in await accounts_repo.list_accounts(pool, org_id):
                members = json.loads(row["memberships"]) if isinstance(row["memberships"], str) else row["memberships"]
                roles = ", ".join(f"{m['workspace_id']}:{m['role']}" for m in members)
                state = " (disabled)" if row["disabled_at"] else ""
                print(f"{str(row['account_id']):36}  {row['email'][:32]:32}  {roles}{state}")
            return 0
        people = _people(state_dir)
        org_id, workspace_id = await _place(pool, args)
        if args.accounts_command == "create":
            account_id = await people.accounts.create_account(
                pool, args.email, _password(args), org_id=org_id, workspace_id=workspace_id, role=args.role,
                actor=actor, display_name=args.name)
            print(f"account id    {account_id}\nworkspace id  {workspace_id}\nrole          {args.role}")
        else:
            created = await people.accounts.invite(pool, args.email, args.role, org_id=org_id,
                                                   workspace_id=workspace_id, actor=actor, address=None)
            print(f"invitation id  {created['invitation_id']}\nexpires        {created['expires_at'].isoformat()}")
            print(f"token          {created['token']}")
            print("The token is shown once; only its SHA-256 is stored. The person accepts it with "
                  "POST /v1/invitations/accept.", file=sys.stderr)
    return 0
