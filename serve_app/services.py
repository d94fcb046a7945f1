"""What an ingress replica works with: settings, a small database pool, the object store,
the shard router, the key cache and its metrics. Built once per replica."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field

import asyncpg
from starlette.requests import HTTPConnection

from actors.accounts.people import People
from actors.auth import KEY_TAG, KeyCache, Principal
from actors.consent.consent_gate import ConsentGate
from actors.consent.records import load_state
from actors.crypto import keyring
from actors.permissions import LEGACY_SCOPE_ROLES, Permission
from actors.ingest.shard_pool import ShardRouter, shard_index
from actors.storage.objectstore import ObjectStore, make_object_store
from actors.storage.postgres import connect_pool, with_retries
from configs.limits import RateLimitSettings
from configs.settings import TracemillSettings
from serve_app.http_io import bearer_key
from serve_app.metrics import IngressMetrics
from serve_app.permissions_table import permission_for
from serve_app.rate_limits import RateGuard
from serve_app.session_access import SessionOwners
from serve_app.shard_client import ShardClient

__all__ = ["Services"]


@dataclass
class Services:
    settings: TracemillSettings
    router: ShardRouter
    store: ObjectStore
    keys: KeyCache
    clients: list[ShardClient] = field(default_factory=list)  # one per shard, in index order
    metrics: IngressMetrics = field(default_factory=IngressMetrics)
    # Rate limits, auth backoff and the negative key cache (create() wires its metrics).
    guard: RateGuard = field(default_factory=lambda: RateGuard(RateLimitSettings()))
    owners: SessionOwners = field(default_factory=SessionOwners)  # who may touch which session
    people: People | None = None  # accounts and access tokens (actors/accounts); create() builds it
    # Whether a recorder may record now (issue 18.1); remembered for auth.cache_ttl_s.
    consent: ConsentGate = field(default_factory=lambda: ConsentGate(0.0, load_state))
    _pool: asyncpg.Pool | None = None
    _pool_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @classmethod
    def create(cls, settings: TracemillSettings) -> "Services":
        router = ShardRouter(settings)
        metrics = IngressMetrics()
        keyring.install(settings.encryption)  # the events API opens encrypted values (issue 18.5)
        return cls(
            settings=settings,
            router=router,
            metrics=metrics,
            guard=RateGuard(settings.limits, metrics.registry),
            clients=[ShardClient(handle) for handle in router.handles],
            store=make_object_store(settings.object_store),
            keys=KeyCache.from_settings(settings.auth),
            people=People.from_settings(settings),
            consent=ConsentGate(settings.auth.cache_ttl_s, load_state),
        )

    async def db(self) -> asyncpg.Pool:
        # The pool opens connections lazily, so a replica starts even while the database is down.
        if self._pool is None:
            async with self._pool_lock:
                if self._pool is None:
                    self._pool = await connect_pool(self.settings.database)
        return self._pool

    async def authorize(self, request: HTTPConnection, credential: str | None = None) -> Principal:
        """The caller, holding the permission the request's route needs (serve_app/permissions_table.py):
        the one check every route makes. `credential`: one not sent as a bearer header (a
        WebSocket's auth frame)."""
        method = "WS" if request.scope["type"] == "websocket" else request.method
        # The path within the app: under a route prefix (an app deployed at /tiny) Serve's
        # scope keeps the prefix in both root_path and path, and the rules name app paths.
        path, root = request.scope.get("path", ""), request.scope.get("root_path", "")
        permission = permission_for(method, path[len(root):] if root and path.startswith(root) else path)
        return await self.principal(bearer_key(request) if credential is None else credential, permission)

    async def principal(self, api_key: str | None, permission: Permission | str) -> Principal:
        pool = await self.db()

        def lookup() -> Awaitable[Principal]:
            people = self.people
            if api_key and not api_key.startswith(KEY_TAG) and people is not None:  # a person's access token
                return with_retries(lambda: people.tokens.principal(pool, api_key), attempts=2, what="token check")
            return with_retries(lambda: self.keys.authenticate(pool, api_key), attempts=2, what="API key check")

        principal = await self.guard.authenticate(api_key, self.keys, lookup)
        principal.require(_LEGACY_SCOPE_PERMISSIONS.get(permission, permission))  # type: ignore[arg-type]
        return principal

    async def check_session(self, principal: Principal, session_id: uuid.UUID) -> None:
        """404 unless the caller may touch the session (its workspace; its own for a recorder)."""
        await self.owners.check(await self.db(), principal, session_id)

    async def check_consent(self, principal: Principal) -> None:
        """403 consent_required for a recorder key without current consent; nothing to look
        up for a key without a recorder (actors/consent/consent_gate.py)."""
        if principal.recorder_id is not None:
            await self.consent.check(await self.db(), principal)

    def shard(self, session_id: uuid.UUID) -> ShardClient:
        """The client through which every call for this session reaches its shard."""
        return self.clients[shard_index(session_id, len(self.clients))]


# Callers not yet converted to authorize() may still name an old scope; each stands for the
# permission its role was mapped to (actors/permissions.LEGACY_SCOPE_ROLES).
_LEGACY_SCOPE_PERMISSIONS: dict[str, Permission] = {
    "ingest": "sessions.write", "read": "sessions.read", "review": "review.write", "admin": "keys.manage",
}
assert set(_LEGACY_SCOPE_PERMISSIONS) == set(LEGACY_SCOPE_ROLES)
