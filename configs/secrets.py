"""Secrets: which settings are secret, how they are kept out of Ray, and how a process gets them.

Every `SecretStr` field of the settings is a secret (the database DSN, the OpenAI keys, the key
pepper): found by type, so a secret field added later is covered without a list to keep. None
of them goes into Ray's internal key-value store or the Serve application's `args`, both of
which any driver, job or dashboard user of the cluster can read (issue 13, item 4).

How a process gets them instead, through its environment:

- `tracemill up` and `tracemill deploy` write them to a file only their user can read (0600,
  `write_secrets_file`) and name that file in the runtime env of the Serve application and of
  the shard actors (`TRACEMILL_SECRETS_FILE`); tasks and actors those start inherit it. Ray Job
  drivers find the file's name (not its content) in the published settings.
- A cluster deployed without tracemill's CLI (the KubeRay manifest) gives every pod the
  documented variables instead (DATABASE_URL, OPENAI_API_KEY, ...) from a Kubernetes Secret.

The file must be on the node that reads it: true for one machine (`up`, `up --address`), for
a directory every node shares, or when TRACEMILL_SECRETS_FILE names a file the operator put on
every node. Elsewhere a node falls back to its own environment, as a KubeRay pod does.
"""

from __future__ import annotations

import copy
import json
import os
import stat
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from configs.base import SettingsError

__all__ = ["SECRETS_FILE_ENV", "merge_secrets", "read_secrets_file", "secrets_file_named", "split_secrets",
           "write_secrets_file"]

SECRETS_FILE_ENV = "TRACEMILL_SECRETS_FILE"


def split_secrets(model: BaseModel) -> tuple[dict[str, Any], dict[str, str]]:
    """(the settings as a JSON-able dict with every secret field left out, {dotted path: value})."""
    public = model.model_dump(mode="json")
    secrets: dict[str, str] = {}
    _take_secrets(model, public, "", secrets)
    return public, secrets


def _take_secrets(model: BaseModel, dumped: dict[str, Any], prefix: str, out: dict[str, str]) -> None:
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, SecretStr):
            out[prefix + name] = value.get_secret_value()
            dumped.pop(name, None)
        elif value is None and _may_hold_secret(info.annotation):
            # An unset secret leaves no None behind either: it would override the value a
            # process's own environment supplies (from_env's overrides win).
            dumped.pop(name, None)
        elif isinstance(value, BaseModel) and isinstance(dumped.get(name), dict):
            _take_secrets(value, dumped[name], f"{prefix}{name}.", out)


def _may_hold_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return SecretStr in typing.get_args(annotation)
    return False


def merge_secrets(public: Mapping[str, Any], secrets: Mapping[str, str]) -> dict[str, Any]:
    """`public` with the secrets put back at their paths; a value `public` already has wins."""
    data = copy.deepcopy(dict(public))
    for path, value in secrets.items():
        node = data
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        if node.get(leaf) is None:
            node[leaf] = value
    return data


def write_secrets_file(path: Path, secrets: Mapping[str, str]) -> Path:
    """Write the secrets readable by this user only: created 0600, never briefly wider."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # a leftover file keeps its old mode through O_CREAT
        with os.fdopen(fd, "w") as out:
            json.dump(dict(secrets), out)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def read_secrets_file(path: Path) -> dict[str, str]:
    """The secrets in `path`; refused when others could read it (a leaked copy is no secret)."""
    try:
        mode = os.stat(path).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SettingsError(f"{path}: group or others may read this secrets file (mode "
                                f"{stat.S_IMODE(mode):o}); make it 600")
        loaded = json.loads(Path(path).read_text())
    except OSError as exc:
        raise SettingsError(f"cannot read the secrets file {path}: {exc.strerror}") from None
    except json.JSONDecodeError:
        raise SettingsError(f"{path}: not a tracemill secrets file (not JSON)") from None
    if not isinstance(loaded, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in loaded.items()):
        raise SettingsError(f"{path}: not a tracemill secrets file (expected an object of strings)")
    return loaded


def secrets_file_named(env: Mapping[str, str], published: str | None = None) -> Path | None:
    """The secrets file this process should read: the one its environment names, else the one
    the deployment published; None when neither exists on this node."""
    for name in (env.get(SECRETS_FILE_ENV), published):
        if name and Path(name).exists():
            return Path(name)
    return None
