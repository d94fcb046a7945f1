"""Rate limits of one ingress replica: per API key and per client address, for HTTP requests,
WebSocket frames and events, new sessions and screenshot bytes; the backoff of addresses whose
keys keep failing, and the negative cache of keys that failed.

Counting is the `limits` library's fixed window over its memory storage: a check is one
counter increment per policy (microseconds), never I/O, and the state is this replica's alone
(configs/limits.py says how the figures divide across replicas). A refusal raises RateLimited,
which the ingress answers with 429, `Retry-After` and the RateLimit headers, and a stream with
a `slow_down` frame; it is raised before anything of the request is stored.

The client address is bound per request or stream by `bound_peer` (the ingress middleware and
the stream handler), so the call sites need not pass it around.
"""

from __future__ import annotations

import contextvars
import hashlib
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any, TypeVar

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter
from prometheus_client import CollectorRegistry, Counter

from actors.auth import KeyCache, Principal, parse_key
from actors.errors import RateLimited, Unauthenticated
from actors.ingest.admission import AdmissionControl, LoopLag
from configs.limits import Rate, RateLimitSettings

__all__ = ["RateGuard", "bound_peer", "current_address"]

T = TypeVar("T")


@dataclass
class _Peer:
    host: str | None
    forwarded_for: str | None
    resolved: str | None = None
    done: bool = False


_PEER: contextvars.ContextVar[_Peer | None] = contextvars.ContextVar("tracemill_peer", default=None)


@contextmanager
def bound_peer(client: Any, forwarded_for: str | None) -> Iterator[None]:
    """Bind the request's TCP peer (Starlette's `request.client`) for the checks under it."""
    token = _PEER.set(_Peer(getattr(client, "host", None), forwarded_for))
    try:
        yield
    finally:
        _PEER.reset(token)


def current_address(settings: RateLimitSettings) -> str | None:
    """The client address of the bound request: its TCP peer, or, when that peer is a trusted
    proxy, the right-most X-Forwarded-For hop that is not one (a client can prepend anything)."""
    peer = _PEER.get()
    if peer is None:
        return None
    if not peer.done:
        peer.resolved, peer.done = _resolve(peer, settings), True
    return peer.resolved


def _resolve(peer: _Peer, settings: RateLimitSettings) -> str | None:
    trusted = settings.trusted_proxies
    if not trusted or not peer.forwarded_for or peer.host is None or not _within(peer.host, trusted):
        return peer.host
    for hop in reversed(peer.forwarded_for.split(",")):
        hop = hop.strip()
        if not _within(hop, trusted):
            try:
                return str(ip_address(hop))
            except ValueError:
                return peer.host  # a malformed hop: believe nothing past it
    return peer.host


def _within(host: str, networks: tuple[Any, ...]) -> bool:
    try:
        ip = ip_address(host)
    except ValueError:
        return False
    return any(ip in net for net in networks)


@dataclass(frozen=True)
class _Policy:
    name: str  # an sf-token: the policy's name in the RateLimit headers
    item: RateLimitItem
    rate: Rate
    unit: str | None  # the draft's `qu`; None means requests


@dataclass
class _Backoff:
    level: int = 0
    blocked_until: float = 0.0
    last_failure: float = 0.0


# setting name -> (policy name, quota unit)
_POLICIES: dict[str, tuple[str, str | None]] = {
    "http_requests_per_key": ("requests-per-key", None),
    "http_requests_per_address": ("requests-per-address", None),
    "ws_frames_per_key": ("frames-per-key", "frames"),
    "ws_frames_per_address": ("frames-per-address", "frames"),
    "events_per_key": ("events-per-key", "events"),
    "events_per_address": ("events-per-address", "events"),
    "sessions_per_key": ("sessions-per-key", None),
    "sessions_per_address": ("sessions-per-address", None),
    "screenshot_bytes_per_key": ("screenshot-bytes-per-key", "content-bytes"),
    "screenshot_bytes_per_address": ("screenshot-bytes-per-address", "content-bytes"),
}
_MAX_BACKOFF_ENTRIES = 100_000
_MAX_KEYS = 200_000


class RateGuard:
    """The rate limits, auth backoff and negative key cache of one replica."""

    def __init__(self, settings: RateLimitSettings, registry: CollectorRegistry | None = None):
        self.settings = settings
        self._storage = MemoryStorage()
        self._limiter = FixedWindowRateLimiter(self._storage)
        self._keys: dict[tuple[str, str], str] = {}  # (policy, identity) -> storage key, built once
        self._policies = {
            field: _Policy(name, _item(getattr(settings, field)), getattr(settings, field), unit)
            for field, (name, unit) in _POLICIES.items()
        }
        backoff = settings.auth_backoff
        self._auth_free = _Policy("auth-failures-per-address",
                                  _item(Rate(amount=backoff.free_failures, window_s=backoff.window_s)),
                                  Rate(amount=backoff.free_failures, window_s=backoff.window_s), None)
        self._negative: dict[bytes, tuple[float, str]] = {}
        # The events this replica's streams have in flight to the shards, and the rate they are
        # acked at: a frame whose ack would come past the target is answered slow_down at once.
        self.admission = AdmissionControl(settings.admission, "this ingress replica", lag=LoopLag())
        self._backoff: dict[str, _Backoff] = {}
        registry = registry if registry is not None else CollectorRegistry()
        self.key_lookups = Counter("tracemill_key_lookups", "API key lookups that queried the database",
                                   ["result"], registry=registry)
        self.auth_refused = Counter("tracemill_auth_refused", "Keys refused without a database query",
                                    ["reason"], registry=registry)
        self.limited = Counter("tracemill_rate_limited", "Requests and frames refused by a rate limit",
                               ["policy"], registry=registry)

    def address(self) -> str | None:
        return current_address(self.settings)

    # ------------------------------------------------------------------ rate limits

    def charge(self, *costs: tuple[str, str | None, int]) -> None:
        """Take each (policy, identity, cost) or none of them: a refusal gives back what this
        call took and raises RateLimited naming the policy. One increment per policy on the
        common path; no await inside, so no other coroutine of the replica runs in between."""
        if not self.settings.enabled:
            return
        taken: list[tuple[str, int]] = []
        for field, identity, cost in costs:
            if identity is None:
                continue
            policy = self._policies[field]
            key = self._key(policy, identity)
            count = self._storage.incr(key, policy.rate.window_s, cost)
            taken.append((key, cost))
            if count > policy.rate.amount:
                for back, amount in taken:
                    self._storage.decr(back, amount)
                raise self._refusal(policy, key, count - cost)

    def _key(self, policy: _Policy, identity: str) -> str:
        key = self._keys.get((policy.name, identity))
        if key is None:
            if len(self._keys) >= _MAX_KEYS:
                self._keys.clear()
            key = self._keys[(policy.name, identity)] = policy.item.key_for(policy.name, identity)
        return key

    def charge_frame(self, principal: Principal) -> None:
        self.charge(("ws_frames_per_key", _caller(principal), 1), ("ws_frames_per_address", self.address(), 1))

    def charge_events(self, principal: Principal, count: int) -> None:
        self.charge(("events_per_key", _caller(principal), count),
                    ("events_per_address", self.address(), count))

    def charge_session(self, principal: Principal) -> None:
        self.charge(("sessions_per_key", _caller(principal), 1), ("sessions_per_address", self.address(), 1))

    def charge_screenshot_bytes(self, principal: Principal, size: int) -> None:
        self.charge(("screenshot_bytes_per_key", _caller(principal), size),
                    ("screenshot_bytes_per_address", self.address(), size))

    async def admitted(self, count: int, work: Awaitable[T]) -> T:
        """`work` for `count` events `admission.admit` took: their place is given back when it
        ends, and an ack is a sample of the rate (a refusal or failure is not)."""
        completed = False
        try:
            result = await work
            completed = True
            return result
        finally:
            self.admission.done(count, completed=completed)

    def _refusal(self, policy: _Policy, key: str, used: int) -> RateLimited:
        # The window restarts at its expiry: then the whole quota is there again.
        wait = self._storage.get_expiry(key) - time.time()
        self.limited.labels(policy.name).inc()
        return _limited(policy, policy.rate.amount - used, wait)

    # ------------------------------------------------------------------ authentication

    async def authenticate(self, presented: str | None, keys: KeyCache,
                           lookup: Callable[[], Awaitable[Principal]]) -> Principal:
        """The caller's principal, charging its request to its address and key. A key this
        replica verified recently costs nothing; a key that failed recently is refused from
        memory; an address in backoff gets 429 for any other key; only the rest query."""
        address = self.address()
        self.charge(("http_requests_per_address", address, 1))
        principal = keys.cached(presented)
        if principal is None:
            # A missing or malformed key is refused by auth without a query: not a guess.
            queries = bool(presented) and parse_key(presented or "") is not None
            if queries:
                self._before_lookup(presented or "", address)
            try:
                principal = await lookup()
            except Unauthenticated as exc:
                if queries:
                    self.key_lookups.labels("unknown").inc()
                    self._lookup_failed(presented or "", address, exc)
                raise
            if queries:
                self.key_lookups.labels("found").inc()
        self.charge(("http_requests_per_key", _caller(principal), 1))
        return principal

    def _before_lookup(self, presented: str, address: str | None) -> None:
        now = time.monotonic()
        remembered = self._negative.get(_digest(presented))
        if remembered is not None and remembered[0] > now:
            self.auth_refused.labels("negative_cache").inc()
            raise Unauthenticated(remembered[1])
        backoff = self._backoff.get(address) if address is not None else None
        if backoff is not None and backoff.blocked_until > now and self.settings.enabled:
            self.auth_refused.labels("backoff").inc()
            self.limited.labels(self._auth_free.name).inc()
            raise _limited(self._auth_free, 0, backoff.blocked_until - now,
                           "too many failed API keys from this address; retry later")

    def _lookup_failed(self, presented: str, address: str | None, exc: Unauthenticated) -> None:
        now = time.monotonic()
        settings = self.settings
        if settings.negative_cache_ttl_s > 0:
            if len(self._negative) >= settings.negative_cache_entries:
                self._negative = {k: v for k, v in self._negative.items() if v[0] > now}
                if len(self._negative) >= settings.negative_cache_entries:
                    self._negative.clear()
            self._negative[_digest(presented)] = (now + settings.negative_cache_ttl_s, exc.message)
        if address is None or self._limiter.hit(self._auth_free.item, self._auth_free.name, address):
            return  # within the free failures of the window
        config = settings.auth_backoff
        if len(self._backoff) >= _MAX_BACKOFF_ENTRIES:
            self._backoff = {a: b for a, b in self._backoff.items() if b.blocked_until > now}
        backoff = self._backoff.setdefault(address, _Backoff())
        if now - backoff.last_failure > config.window_s + config.max_s:
            backoff.level = 0  # a quiet spell forgives the past
        backoff.level += 1
        backoff.last_failure = now
        backoff.blocked_until = now + min(config.max_s, config.base_s * 2 ** min(backoff.level - 1, 30))


def _caller(principal: Principal) -> str:
    # The per-key limits count a signed-in person by account (their principal has no key).
    return str(principal.key_id or getattr(principal, "account_id", None))


def _item(rate: Rate) -> RateLimitItem:
    return RateLimitItemPerSecond(rate.amount, rate.window_s)


def _digest(key: str) -> bytes:
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _limited(policy: _Policy, remaining: int, wait_s: float, message: str | None = None) -> RateLimited:
    retry_after_s = float(max(1, math.ceil(wait_s)))  # Retry-After and `t` are whole seconds
    what = f"{policy.rate.amount} {policy.unit or 'requests'} per {policy.rate.window_s} s"
    return RateLimited(
        message or f"rate limit {policy.name} ({what}, per ingress replica) reached; retry after {retry_after_s:g} s",
        retry_after_s,
        [{"policy": policy.name, "quota": policy.rate.amount, "window_s": policy.rate.window_s,
          "remaining": max(0, int(remaining)), "unit": policy.unit}],
    )
