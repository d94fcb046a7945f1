"""`tracemill keys generate|create|list|revoke|rotate`, and the local stack's key pepper.

Keys are stored as HMAC-SHA256 under a pepper (actors/auth.py). A deployment gives it as
TRACEMILL_KEY_PEPPER or TRACEMILL_KEY_PEPPER_FILE; a local `tracemill up` without either makes
one once and keeps it in its state directory (0600), where these commands find it too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from actors import auth
from actors.permissions import ALL_ROLES, role_for_scopes
from cluster import datakey_cli
from configs.settings import SettingsError, TracemillSettings, secret_from_env

__all__ = ["PEPPER_ENV", "PEPPER_FILE_NAME", "add_arguments", "parse_duration", "run",
           "state_pepper", "with_local_pepper"]

PEPPER_ENV = "TRACEMILL_KEY_PEPPER"
PEPPER_FILE_NAME = "key_pepper"
_DURATION = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    """`90s`, `30m`, `24h`, `90d`."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 30m, 24h or 90d")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def state_pepper(state_dir: Path) -> str:
    """The local stack's pepper: read from the state directory, made there (0600) the first time.
    Losing it invalidates every stored key, as a changed pepper would."""
    path = state_dir / PEPPER_FILE_NAME
    state_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            raise SettingsError(f"{path} is readable by others; `chmod 600` it") from None
        return path.read_text().strip()
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(48) + "\n")
    return path.read_text().strip()


def with_local_pepper(settings: TracemillSettings, state_dir: Path) -> TracemillSettings:
    """`settings` with the state directory's pepper when the environment gave none."""
    if settings.auth.pepper is not None:
        return settings
    auth_settings = settings.auth.model_copy(update={"pepper": SecretStr(state_pepper(state_dir))})
    return settings.model_copy(update={"auth": auth_settings})


def _pepper(state_dir: Path) -> bytes:
    given = secret_from_env(os.environ, PEPPER_ENV)
    if given:
        return given.encode("utf-8")
    if os.environ.get("DATABASE_URL"):  # a deployment's database: only its pepper fits its keys
        raise SettingsError(f"DATABASE_URL is set: give the deployment's pepper as {PEPPER_ENV} "
                            f"or {PEPPER_ENV}_FILE too")
    return state_pepper(state_dir).encode("utf-8")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir")
    sub = parser.add_subparsers(dest="keys_command", required=True)
    sub.add_parser("generate", help="print a fresh key without storing it (for TRACEMILL_BOOTSTRAP_API_KEY)")
    create = sub.add_parser("create", help="make a key (shown once; only an HMAC of it is stored)")
    create.add_argument("--role", choices=ALL_ROLES,
                        help="owner, admin, reviewer, analyst or recorder (README: the permission table)")
    create.add_argument("--scopes", help="the old way, mapped to a role: admin -> admin, review -> reviewer, "
                                         "ingest -> recorder, read -> analyst (default: ingest,read -> recorder)")
    create.add_argument("--org", help="organisation id or name (default: the default organisation)")
    create.add_argument("--workspace", help="workspace id or name (default: the organisation's default)")
    create.add_argument("--recorder", help="the person or extension install using the key (made if new)")
    create.add_argument("--name", default="")
    create.add_argument("--expires-in", type=parse_duration, help="e.g. 90d (default: never)")
    sub.add_parser("list", help="list keys (ids only, never secrets)")
    revoke = sub.add_parser("revoke", help="revoke a key by key id or tm_<lookup id>, at once")
    revoke.add_argument("key")
    rotate = sub.add_parser("rotate", help="a new key with the same scopes and organisation; "
                                           "the old one stops working after the overlap")
    rotate.add_argument("key", help="key id or tm_<lookup id>")
    rotate.add_argument("--overlap", type=parse_duration, default=timedelta(hours=24),
                        help="how long the old key keeps working (default 24h)")
    rotate.add_argument("--expires-in", type=parse_duration,
                        help="the new key's lifetime (default: the old key's, if it had one)")
    datakey_cli.add_parser(sub)  # encryption at rest: a workspace's data key (cluster/datakey_cli.py)


def run(args: argparse.Namespace) -> int:
    if args.keys_command == "generate":
        print(auth.generate_key())
        return 0
    if args.keys_command == "rotate-data-key":
        return datakey_cli.run(args)
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from cluster.cli import _database, _state_dir

    state_dir = _state_dir(args.state_dir)
    pepper = _pepper(state_dir)
    async with _database(state_dir) as pool:
        if args.keys_command == "create":
            key_id, key, role = await _create(pool, args, pepper)
            await _audit_key(pool, "key.create", key_id, {"role": role, "name": args.name})
            print(f"key id  {key_id}\nrole    {role}\nkey     {key}")
            print("The key is shown once; only an HMAC of it is stored.", file=sys.stderr)
        elif args.keys_command == "list":
            _print_keys(await auth.list_keys(pool))
        elif args.keys_command == "revoke":
            revoked = await auth.revoke_key(pool, args.key)
            await _audit_key(pool, "key.revoke", revoked, {})
            print(f"revoked {revoked}")
        else:
            done = await auth.rotate_key(pool, args.key, overlap=args.overlap, pepper=pepper,
                                         expires_in=args.expires_in)
            await _audit_key(pool, "key.rotate", done.old_key_id, {"new_key_id": str(done.new_key_id)})
            print(f"key id  {done.new_key_id}\nkey     {done.new_key}")
            print(f"the old key {done.old_key_id} works until {done.old_expires_at.isoformat()}")
            print("The key is shown once; only an HMAC of it is stored.", file=sys.stderr)
    return 0


async def _audit_key(pool: Any, action: str, key_id: Any, details: dict[str, Any]) -> None:
    """The audit entry of a key made, rotated or revoked from the command line."""
    import getpass

    from actors.accounts.audit import Actor, audit

    row = await pool.fetchrow("SELECT org_id, workspace_id FROM api_keys WHERE key_id = $1", key_id)
    await audit(pool, action, Actor("cli", getpass.getuser()), target=str(key_id), org_id=row["org_id"],
                workspace_id=row["workspace_id"], details=details)


async def _create(pool: Any, args: argparse.Namespace, pepper: bytes) -> tuple[Any, str, str]:
    """A key of a role (or of old scopes, mapped) in a workspace, with a recorder if named."""
    from actors.storage import orgs_repo
    from cluster.orgs_cli import org_of

    if args.role and args.scopes:
        raise SettingsError("give --role or --scopes, not both")
    scopes = [s.strip() for s in (args.scopes or "ingest,read").split(",") if s.strip()]
    role = args.role or role_for_scopes(scopes)
    org_id = await org_of(pool, args.org) if args.org else auth.DEFAULT_ORG_ID
    workspace_id = await (orgs_repo.workspace_of_org(pool, org_id, args.workspace) if args.workspace
                          else orgs_repo.default_workspace(pool, org_id))
    recorder_id = await orgs_repo.recorder_named(pool, org_id, workspace_id, args.recorder) if args.recorder else None
    key_id, key = await auth.create_key(pool, role=role, scopes=None if args.role else scopes, org_id=org_id,
                                        workspace_id=workspace_id, recorder_id=recorder_id, name=args.name,
                                        pepper=pepper, expires_in=args.expires_in)
    return key_id, key, role


def _print_keys(keys: list[auth.KeyInfo]) -> None:
    now = datetime.now(timezone.utc)
    print(f"{'key id':36}  {'lookup id':19}  {'role':8}  {'workspace':36}  {'name':16}  {'state':8}  expires")
    for k in keys:
        expires = k.expires_at.strftime("%Y-%m-%d %H:%M:%S") if k.expires_at else "-"
        print(f"{str(k.key_id):36}  {k.display_id:19}  {k.role:8}  {str(k.workspace_id):36}  {k.name[:16]:16}  "
              f"{k.state(now):8}  {expires}")
