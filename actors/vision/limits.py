"""Client-side pacing and failure isolation for a paid, rate-limited API.

`RateLimiter` keeps us under the provider's requests- and tokens-per-minute limits, so we
queue briefly instead of collecting 429s. `CircuitBreaker` stops calling a provider that keeps
failing, so every screenshot does not pay a full retry cycle before falling back to local
analysis. Both are pure: time comes from an injected clock, so every transition is testable
without sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Literal

__all__ = ["BreakerState", "CircuitBreaker", "RateLimiter"]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[object]]
BreakerState = Literal["closed", "open", "half_open"]


class _Bucket:
    """A token bucket that may go into debt: reservations are granted in order of arrival.

    Letting the level go negative (instead of polling until it is positive) makes waiting
    first-come-first-served and a wait computable in one step: a caller reserves, learns how
    long the debt takes to refill, and sleeps exactly that long.
    """

    def __init__(self, per_minute: int, now: float):
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # units per second
        self.level = self.capacity  # start full: the provider's window starts full too
        self.updated = now

    def refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated)
        self.level = min(self.capacity, self.level + elapsed * self.rate)
        self.updated = max(self.updated, now)

    def clamp(self, amount: float) -> float:
        # One request bigger than the whole bucket would otherwise wait forever.
        return min(max(0.0, float(amount)), self.capacity)

    def wait_for(self, amount: float) -> float:
        deficit = self.clamp(amount) - self.level
        return 0.0 if deficit <= 0 else deficit / self.rate

    def adjust(self, delta: float) -> None:
        # Never more than full, never deeper in debt than one bucket.
        self.level = max(-self.capacity, min(self.capacity, self.level + delta))


class RateLimiter:
    """Two token buckets (requests and tokens per minute), refilled continuously."""

    def __init__(
        self,
        requests_per_minute: int,
        tokens_per_minute: int,
        clock: Clock = time.monotonic,
        *,
        sleep: Sleep = asyncio.sleep,
    ):
        if requests_per_minute < 1 or tokens_per_minute < 1:
            raise ValueError("rate limits must be at least 1 per minute")
        self._clock = clock
        self._sleep = sleep
        now = clock()
        self._requests = _Bucket(requests_per_minute, now)
        self._tokens = _Bucket(tokens_per_minute, now)

    def wait_time(self, tokens: int) -> float:
        """Seconds a request of `tokens` would wait if reserved now; reserves nothing."""
        now = self._clock()
        self._requests.refill(now)
        self._tokens.refill(now)
        return max(self._requests.wait_for(1), self._tokens.wait_for(tokens))

    def reserve(self, tokens: int) -> float:
        """Reserve one request and `tokens` now; return how long to wait before sending.

        The reservation is made whatever the wait (0 if the request may go at once): the
        caller must honour the wait, or hand the tokens back with `settle(tokens, 0)`.
        """
        wait = self.wait_time(tokens)
        self._requests.adjust(-1)
        self._tokens.adjust(-self._tokens.clamp(tokens))
        return wait

    async def acquire(self, tokens: int) -> float:
        """Wait until both buckets allow the request; return the seconds waited."""
        wait = self.reserve(tokens)
        if wait > 0:
            try:
                await self._sleep(wait)
            except asyncio.CancelledError:
                # A cancelled caller sends nothing: give its share back to those queued.
                self._requests.adjust(1)
                self._tokens.adjust(self._tokens.clamp(tokens))
                raise
        return wait

    def settle(self, estimated: int, actual: int) -> None:
        """Correct the token bucket once the true usage is known (usage block of the reply)."""
        self._tokens.refill(self._clock())
        self._tokens.adjust(self._tokens.clamp(estimated) - max(0, actual))

    @property
    def tokens_available(self) -> float:
        self._tokens.refill(self._clock())
        return self._tokens.level


class CircuitBreaker:
    """closed → (N consecutive failures) → open → (cooldown) → half_open → closed or open.

    In half_open exactly one probe call is let through; everyone else is refused until its
    verdict arrives, so a recovering provider is not hit by the whole backlog at once.
    """

    def __init__(
        self,
        failures_to_open: int = 5,
        cooldown_s: float = 30.0,
        clock: Clock = time.monotonic,
    ):
        if failures_to_open < 1:
            raise ValueError("failures_to_open must be at least 1")
        if cooldown_s <= 0:
            raise ValueError("cooldown_s must be positive")
        self._threshold = failures_to_open
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._state: BreakerState = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._probe_out = False
        self._opened_count = 0

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    @property
    def opened_count(self) -> int:
        return self._opened_count

    def allow(self) -> bool:
        """May a call go out now? In half_open, True hands the caller the single probe."""
        if self._state == "closed":
            return True
        if self._state == "open":
            if self._clock() - self._opened_at < self._cooldown_s:
                return False
            self._state = "half_open"
            self._probe_out = False
        if self._probe_out:
            return False
        self._probe_out = True
        return True

    def record_success(self) -> None:
        """The provider answered: close and forget past failures (in any state)."""
        self._state = "closed"
        self._failures = 0
        self._probe_out = False

    def record_failure(self) -> None:
        self._failures += 1
        if self._state == "half_open":
            self._open()  # the probe failed: a fresh cooldown
        elif self._state == "closed" and self._failures >= self._threshold:
            self._open()
        # Already open: a call that was in flight when it opened; the cooldown stands.

    def release(self) -> None:
        """A permitted call ended with no verdict (cancelled, bad input): free the probe slot."""
        self._probe_out = False

    def _open(self) -> None:
        self._state = "open"
        self._opened_at = self._clock()
        self._opened_count += 1
        self._probe_out = False
