"""The session shards as a set: who creates them, how replicas find them, how a deploy replaces them.

Shards are named, detached actors in the settings' namespace: any ingress replica (or job)
reaches the same shard for a session, and a shard outlives every replica. Only the deploying
side creates them (`tracemill up`, `tracemill deploy` through cluster.serve_deploy, before the
Serve application; the app builder when a manifest deployed it, see serve_app.app); ingress
replicas only look them up (ShardRouter).

A shard's name carries the fingerprint of the settings it runs with, `session-shard-<fp>-<i>`:
a replica always reaches shards of its own settings, and a deploy with changed settings makes
a new generation. Replacing one never loses an acked event — drain, then replace:

1. Drain the old generation (`ManagedShard.drain`): each old shard refuses new work with
   `Overloaded` (HTTP 429 with Retry-After, WebSocket `slow_down`: the client keeps the frame
   and sends it again) and returns once every call it had taken has returned. A batch is acked
   only after its commit, so when drain returns, everything the old shard acked is in
   PostgreSQL and it holds nothing unwritten.
2. Create the new generation. A new shard knows nothing and rebuilds each session from
   PostgreSQL on first touch; the old ones write no more, so what it rebuilds is complete and
   no session ever has two writers.
3. Deploy the Serve application (the caller). New replicas look the new shards up; old
   replicas, until Serve stops them, reach only drained shards, so their clients get
   `slow_down` and resend, to a new replica once they reconnect.
4. Retire the old generation once no old replica is left (`retire_shards`).

A frame refused in 1 or 3, or committed but with its ack lost, comes back from the client;
writes are idempotent per (session_id, seq), so it is stored once. If the deploy fails after
1, the caller reopens the old shards and removes the new ones (`undo_replacement`).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import ray
from ray.actor import ActorHandle

from actors.errors import ConfigError, DependencyUnavailable, Overloaded
from actors.ingest.shard import SessionShard, shard_index
from actors.logs import setup_logging
from configs.secrets import SECRETS_FILE_ENV
from configs.settings import TracemillSettings

__all__ = ["ManagedShard", "ShardRouter", "create_shards", "replace_shards", "retire_shards", "undo_replacement",
           "shard_fingerprint", "shard_index", "shard_name", "shard_generations"]

log = logging.getLogger(__name__)

_NAME = re.compile(r"^session-shard-(?:(?P<fp>[0-9a-f]{12})-)?(?P<index>\d+)$")  # fp-less: before generations
_RESEND_AFTER_S = 0.5
_DRAIN_TIMEOUT_S = 60.0
# Answered while draining: the deployer's probe, the ingress's health check, drain itself, and
# `call`, which only dispatches (by getattr, so to the gated methods): gated too, it would make a
# draining shard fail the readiness check that goes through it to `check_health`.
_ALWAYS_OPEN = frozenset({"ping", "check_health", "drain", "reopen", "call"})


# Sections only the ingress reads: changing a rate limit, a quota or the CORS list redeploys the
# replicas and must not drain and replace every shard.
_INGRESS_ONLY = ("limits", "quotas", "security")


def shard_fingerprint(settings: TracemillSettings) -> str:
    """What a generation of shards is keyed by: every setting that is not secret (a shard runs
    processing, privacy and storage with them, not only its own `shards` section), less the
    ingress-only sections."""
    args = settings.public_args()
    public = {k: v for k, v in args.items() if k not in _INGRESS_ONLY}
    # Admission control sits among the limits, but the shards check it too.
    public["admission"] = args.get("limits", {}).get("admission")
    canonical = json.dumps(public, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def shard_name(settings: TracemillSettings, index: int) -> str:
    return f"session-shard-{shard_fingerprint(settings)}-{index}"


class ManagedShard(SessionShard):
    """A SessionShard as the deploying side creates it: built from the settings that are not
    secret (actor arguments are kept by Ray for restarts; the secrets come from this process's
    environment, configs/secrets.py), and able to drain before it is replaced."""

    def __init__(self, index: int, public_settings: dict[str, Any]) -> None:
        settings = TracemillSettings.with_secrets(public_settings)
        setup_logging(f"shard-{index}", settings.log_level)  # first call wins: before the base's
        super().__init__(index, settings)
        self._draining = False
        self._active_calls = 0

    async def drain(self, timeout_s: float = _DRAIN_TIMEOUT_S) -> dict[str, Any]:
        """Refuse new work, and return once every call taken before has returned (acked
        batches are committed by then): step 1 of a replacement."""
        self._draining = True
        deadline = time.monotonic() + timeout_s
        while self._active_calls:
            if time.monotonic() > deadline:
                raise DependencyUnavailable(f"shard {self._index}: {self._active_calls} calls still "
                                            f"running after {timeout_s:.0f} s of draining")
            await asyncio.sleep(0.02)
        return await self.ping()

    async def reopen(self) -> None:
        """Take work again: the deploy that drained this shard failed."""
        self._draining = False


def _refused_while_draining(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def gated(self: ManagedShard, *args: Any, **kwargs: Any) -> Any:
        if self._draining:
            raise Overloaded("this session shard is being replaced; resend shortly", retry_after_s=_RESEND_AFTER_S)
        self._active_calls += 1
        try:
            return await method(self, *args, **kwargs)
        finally:
            self._active_calls -= 1

    return gated


# Every public method of the shard, whatever it is called, passes the drain gate: a method
# added to SessionShard later cannot slip past a replacement.
for _name, _method in inspect.getmembers(SessionShard, inspect.iscoroutinefunction):
    if not _name.startswith("_") and _name not in _ALWAYS_OPEN:
        setattr(ManagedShard, _name, _refused_while_draining(_method))


class ShardRouter:
    """A replica's handles on the shards of its settings; looked up, never created."""

    def __init__(self, settings: TracemillSettings):
        shards = settings.shards
        self._handles: list[ActorHandle] = []
        for i in range(shards.count):
            name = shard_name(settings, i)
            try:
                self._handles.append(ray.get_actor(name, namespace=shards.namespace))
            except ValueError:
                raise ConfigError(
                    f"no shard {name} in namespace {shards.namespace!r}: the shards of these settings are "
                    "created by `tracemill up` or `tracemill deploy` before the app starts") from None

    def for_session(self, session_id: uuid.UUID) -> ActorHandle:
        return self._handles[shard_index(session_id, len(self._handles))]

    @property
    def handles(self) -> list[ActorHandle]:
        return list(self._handles)


def create_shards(settings: TracemillSettings, secrets_file: Path | None, *, timeout_s: float = 120) -> list[ActorHandle]:
    """This settings' generation, created where missing; returns once every shard answers.
    `secrets_file` is named in the shards' environment; None: they read their node's own."""
    shards = settings.shards
    public = settings.public_args()
    runtime_env = {"env_vars": {SECRETS_FILE_ENV: str(secrets_file)}} if secrets_file else None
    actor_cls = ray.remote(ManagedShard)
    handles = [
        actor_cls.options(
            name=shard_name(settings, i),
            namespace=shards.namespace,
            lifetime="detached",
            get_if_exists=True,
            num_cpus=shards.num_cpus,
            max_restarts=-1,
            # Every shard method is idempotent, so a call caught by a restart is replayed.
            max_task_retries=3,
            max_concurrency=10_000,
            runtime_env=runtime_env,
        ).remote(i, public)
        for i in range(shards.count)
    ]
    ray.get([h.ping.remote() for h in handles], timeout=timeout_s)
    return handles


def shard_generations(namespace: str) -> dict[str, list[str]]:
    """{fingerprint: shard names} of every generation alive in `namespace` ("" for shards
    named before generations existed)."""
    found: dict[str, list[str]] = {}
    for entry in ray.util.list_named_actors(all_namespaces=True):
        match = _NAME.match(entry["name"])
        if entry.get("namespace") == namespace and match:
            found.setdefault(match["fp"] or "", []).append(entry["name"])
    return found


def replace_shards(settings: TracemillSettings, secrets_file: Path | None) -> list[ActorHandle]:
    """Steps 1 and 2: drain every other generation, then create this one. Returns the drained
    shards, for `retire_shards` after the app is deployed (or `undo_replacement` if it failed)."""
    namespace = settings.shards.namespace
    current = shard_fingerprint(settings)
    old = [_handle(name, namespace) for fp, names in shard_generations(namespace).items() if fp != current
           for name in names]
    old = [h for h in old if h is not None]
    if old:
        log.info("draining %d shards of the previous settings", len(old))
        _call_each(old, "drain", timeout_s=_DRAIN_TIMEOUT_S + 30)
    create_shards(settings, secrets_file)
    return old


def retire_shards(handles: list[ActorHandle]) -> None:
    """Step 4: end the drained generation (nothing calls it any more)."""
    for handle in handles:
        try:
            ray.kill(handle, no_restart=True)
        except ValueError:  # already gone
            pass


def undo_replacement(settings: TracemillSettings, old: list[ActorHandle]) -> None:
    """The deploy after `replace_shards` failed: end this settings' generation, reopen `old`."""
    names = shard_generations(settings.shards.namespace).get(shard_fingerprint(settings), [])
    retire_shards([h for h in (_handle(n, settings.shards.namespace) for n in names) if h is not None])
    _call_each(old, "reopen", timeout_s=30)


def _call_each(handles: list[ActorHandle], method: str, *, timeout_s: float) -> None:
    """`method` on every shard at once. A shard from before generations has no drain (it is
    killed at retirement all the same), and one that died meanwhile holds nothing: both are
    logged, not fatal; a shard that does not finish draining in time is."""
    refs = []
    for handle in handles:
        try:
            refs.append(getattr(handle, method).remote())
        except AttributeError:
            log.info("a shard without %s (named before generations): retired as it is", method)
    for ref in refs:
        try:
            ray.get(ref, timeout=timeout_s)
        except ray.exceptions.RayActorError:
            log.info("a shard ended before %s", method)


def _handle(name: str, namespace: str) -> ActorHandle | None:
    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError:  # gone meanwhile
        return None
