"""Pace calls by what the provider says is left, not by fixed numbers.

OpenAI (and compatible hosts) send `x-ratelimit-remaining-requests` / `-tokens` and
`x-ratelimit-reset-requests` / `-tokens` ("1s", "6m0s", "250ms") on every answer. The limiter
reads them from each response (an httpx response hook on the client the one OpenAI layer is
given) and makes the next caller wait for the reset once what is left falls to `reserve`: the
429 never comes, rather than being retried after it did.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Mapping

import httpx

__all__ = ["HeaderRateLimiter", "parse_reset", "shared_limiter"]

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_reset(value: str | None) -> float | None:
    """Seconds in OpenAI's reset format ("1s", "6m0s", "20ms", "1h2m3.5s"); None if unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))  # some hosts send plain seconds
    except ValueError:
        pass
    parts = _PART.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    return sum(float(n) * _UNIT[u] for n, u in parts)


class HeaderRateLimiter:
    """Shared by every call of one client. `reserve`: requests (or tokens) kept back, so
    concurrent callers that read the same headers do not overrun the limit together."""

    def __init__(self, reserve: int = 1, max_wait_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep) -> None:
        self.reserve, self.max_wait_s = reserve, max_wait_s
        self._clock, self._sleep = clock, sleep
        self.remaining: dict[str, int] = {}  # "requests" / "tokens" -> left as last reported
        self.reset_at: dict[str, float] = {}
        self.waits = 0
        self.waited_s = 0.0
        # One lock per event loop: a process-wide limiter (shared_limiter) outlives the loop of
        # each Ray task that uses it, and an asyncio.Lock belongs to one loop.
        self._lock_of: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        # While nothing is known (the first call, a new window) one call goes first and the
        # others wait for its answer's headers: concurrent callers would otherwise all go
        # blind into a window that may hold fewer requests than there are callers.
        self._probe_at: float | None = None
        self.headerless = False  # the provider sends no such headers: nothing to wait for

    def observe(self, headers: Mapping[str, str]) -> None:
        now = self._clock()
        self._probe_at = None
        seen = False
        for kind in ("requests", "tokens"):
            left = headers.get(f"x-ratelimit-remaining-{kind}")
            reset = parse_reset(headers.get(f"x-ratelimit-reset-{kind}"))
            if left is None or reset is None:
                continue
            try:
                value = int(float(left))
            except ValueError:
                continue
            seen = True
            known, old_reset = self.remaining.get(kind), self.reset_at.get(kind, now)
            # Within the same window an answer may be older than calls we counted since it was
            # sent (they are not in its number yet): keep the lower count.
            same_window = known is not None and now < old_reset and now + reset <= old_reset + 0.05
            self.remaining[kind] = min(known, value) if same_window and known is not None else value
            self.reset_at[kind] = now + reset
        self.headerless = self.headerless or not seen and not self.remaining

    def settle(self) -> None:
        """A call that acquired has ended, answered or not: a probe that got no answer (a
        dropped connection, a timeout) must not keep the others waiting."""
        self._probe_at = None

    async def on_response(self, response: httpx.Response) -> None:
        """The httpx event hook: `httpx.AsyncClient(event_hooks={"response": [limiter.on_response]})`."""
        self.observe(response.headers)

    def wait_time(self, tokens: int = 0) -> float:
        """Seconds a call needing `tokens` would wait now (uncapped): callers that would rather
        answer another way than wait long (vision's local analysis) ask first."""
        wait = 0.0
        now = self._clock()
        needs = {"requests": 1, "tokens": tokens}
        for kind, left in self.remaining.items():
            reset_at = self.reset_at.get(kind, now)
            if reset_at > now and left - needs[kind] < self.reserve:
                wait = max(wait, reset_at - now)
        return wait

    def _lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock_of is None or self._lock_of[0] is not loop:
            self._lock_of = (loop, asyncio.Lock())  # the older loop has ended
        return self._lock_of[1]

    async def acquire(self, tokens: int = 0) -> None:
        """Wait, if what is left is at the reserve, until the window resets; then count this call."""
        async with self._lock():  # one waiter at a time: the others queue behind the reset
            needs = {"requests": 1, "tokens": tokens}
            while (not self.remaining and not self.headerless and self._probe_at is not None
                   and self._clock() - self._probe_at < self.max_wait_s):
                await self._sleep(0.005)  # the probe's answer is on its way
            if not self.remaining and not self.headerless:
                self._probe_at = self._clock()
            wait = self.wait_time(tokens)
            if wait > 0:
                wait = min(wait, self.max_wait_s)
                self.waits += 1
                self.waited_s += wait
                await self._sleep(wait)
                self.remaining.clear()  # a fresh window: the next answer tells us again
            for kind, need in needs.items():
                if kind in self.remaining:
                    self.remaining[kind] -= need  # before the answer comes: concurrent callers count too

    def client(self, timeout: float) -> httpx.AsyncClient:
        """An httpx client whose answers feed this limiter (for OpenAIApi's http_client)."""
        return httpx.AsyncClient(timeout=timeout, event_hooks={"response": [self.on_response]})

    def attach(self, client: httpx.AsyncClient | None, timeout: float) -> httpx.AsyncClient:
        """`client` (a caller's own, tests pass one) with this limiter's hook added, or a new one."""
        if client is None:
            return self.client(timeout)
        hooks = client.event_hooks
        if self.on_response not in hooks.get("response", []):
            client.event_hooks = {**hooks, "response": [*hooks.get("response", []), self.on_response]}
        return client


_SHARED: dict[str, HeaderRateLimiter] = {}


def shared_limiter(key: str, max_wait_s: float) -> HeaderRateLimiter:
    """The limiter of one provider account in this process (key: kind and base URL), so the
    calls of every task a Ray worker runs read and respect the same headers."""
    limiter = _SHARED.get(key)
    if limiter is None:
        limiter = _SHARED[key] = HeaderRateLimiter(max_wait_s=max_wait_s)
    return limiter
