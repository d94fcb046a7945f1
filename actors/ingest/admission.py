"""Admission control: refuse, at once, work whose ack would come later than a target.

A closed-loop client keeps one frame in flight, so past saturation Little's law sets the ack
latency: latency = work in flight / rate of completion. Queueing more cannot make anything
faster; it only makes every ack later (at N = 1,000 sessions, 7 to 9 s). So each place where
work queues (an ingress replica's streams, a shard's commit queue) estimates how long new work
would wait: the work already in flight divided by the rate it has been measured to complete
at, and refuses what would be acked past the target with `Overloaded` (`slow_down` on a
stream, 429 with Retry-After over HTTP), before anything of it is queued or stored.

The rate is measured, not configured: an EWMA of units completed per second of *busy* time
(time with work in flight), so an idle spell does not read as a slow server, and whatever
slows the work down (a contended CPU, a slow disk, redaction, the database) shows in it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

from actors.errors import Overloaded
from configs.limits import AdmissionSettings

__all__ = ["AdmissionControl", "LoopLag", "ServiceRate"]

# Before anything was measured: assume a rate no server falls below while healthy, so the
# first seconds admit freely (the first commits then teach the real rate).
_INITIAL_UNITS_PER_S = 5_000.0
# Samples over intervals shorter than this are merged into the next: a burst of completions
# within a millisecond would otherwise read as an absurd rate.
_MIN_SAMPLE_S = 0.005


class ServiceRate:
    """Units of work completed per second of busy time, as an EWMA of measured samples."""

    def __init__(self, alpha: float, initial_per_s: float = _INITIAL_UNITS_PER_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < alpha <= 1:
            raise ValueError("alpha must lie in (0, 1]")
        self._alpha = alpha
        self._clock = clock
        self.per_s = initial_per_s
        self.samples = 0
        self._busy_since: float | None = None  # start of the unsampled busy interval
        self._pending_units = 0

    def started(self, in_flight_before: int) -> None:
        """Work arrives; with nothing in flight before, a busy interval begins now."""
        if in_flight_before <= 0:
            self._busy_since = self._clock()

    def completed(self, units: int, in_flight_after: int) -> None:
        """`units` finished; the interval since the last sample becomes a sample of the rate."""
        now = self._clock()
        since = self._busy_since if self._busy_since is not None else now
        self._pending_units += units
        elapsed = now - since
        if elapsed >= _MIN_SAMPLE_S and self._pending_units > 0:
            # Work that completed with as much or more still waiting behind it was served at
            # capacity; with little behind it, the interval may hold more latency (a commit
            # window, a round trip) than service, so it may raise the rate, not lower it.
            self.observe(self._pending_units, elapsed, saturated=in_flight_after >= self._pending_units)
            self._pending_units = 0
            since = now
        # Still busy: the next interval starts here. Idle: the next arrival starts it.
        self._busy_since = since if in_flight_after > 0 else None
        if in_flight_after <= 0:
            self._pending_units = 0

    def observe(self, units: int, seconds: float, *, saturated: bool = True) -> None:
        """One sample: `units` completed in `seconds` of busy time. A sample taken without a
        backlog (`saturated=False`) is a lower bound of the rate: it only ever raises it."""
        if units <= 0 or seconds <= 0:
            return
        rate = units / seconds
        if not saturated and rate < self.per_s:
            return
        self.per_s = self._alpha * rate + (1 - self._alpha) * self.per_s
        self.samples += 1

    def seconds_for(self, units: int) -> float:
        return max(units, 0) / self.per_s if self.per_s > 0 else float("inf")


class LoopLag:
    """How late this process's event loop runs what is ready: an EWMA of how far a short sleep
    overshoots. A frame waits that long before the code that counts in-flight work sees it
    (it sits in the connection's buffers meanwhile), so an ingress adds it to its estimate."""

    def __init__(self, alpha: float = 0.3, interval_s: float = 0.05) -> None:
        self._alpha, self._interval_s = alpha, interval_s
        self.lag_s = 0.0
        self.worst_s = 0.0  # the longest overshoot seen
        self._task: asyncio.Task[None] | None = None

    def ensure_running(self) -> None:
        """Start measuring in the running loop (once; again if the loop changed or it ended)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(self._interval_s)
            late = max(0.0, loop.time() - started - self._interval_s)
            self.lag_s = self._alpha * late + (1 - self._alpha) * self.lag_s
            self.worst_s = max(self.worst_s, late)


class AdmissionControl:
    """One queue's admission: the estimate of its delay, and the refusal past the target."""

    def __init__(self, settings: AdmissionSettings, what: str,
                 clock: Callable[[], float] = time.monotonic, lag: LoopLag | None = None) -> None:
        self.settings = settings
        self.what = what  # named in the refusal: "this ingress replica", "session shard 3"
        self.rate = ServiceRate(settings.ewma_alpha, clock=clock)
        self.lag = lag
        self.in_flight = 0  # units admitted and not yet completed
        self.refused = 0

    def estimate_s(self, extra_units: int = 0) -> float:
        """How long work arriving now would wait for its ack: the loop's lag (when measured),
        then everything ahead of it, and itself, at the measured rate."""
        lag_s = self.lag.lag_s if self.lag is not None else 0.0
        return lag_s + self.rate.seconds_for(self.in_flight + extra_units)

    def precheck(self) -> None:
        """Refuse before any work on the request (parsing it) when the queue ahead alone is
        already past the target."""
        self._refuse_past_target(0)

    def admit(self, units: int) -> None:
        """Take `units` into the queue, or raise Overloaded (nothing taken) when their ack
        would come past the target. A lone batch on an empty queue is always taken: refusing
        it would not make anything faster."""
        self._refuse_past_target(units)
        self.rate.started(self.in_flight)
        self.in_flight += units

    def _refuse_past_target(self, units: int) -> None:
        if self.lag is not None:
            self.lag.ensure_running()
        target_s = self.settings.ack_target_ms / 1000
        if self.settings.enabled and self.in_flight > 0:
            estimate = self.estimate_s(units)
            if estimate > target_s:
                self.refused += 1
                raise Overloaded(
                    f"{self.what} would ack this in ~{estimate:.1f} s, past the {target_s:g} s target; resend later",
                    retry_after_s=self._retry_after_s(estimate - target_s),
                )

    def done(self, units: int, *, completed: bool = True) -> None:
        """`units` admitted before have left the queue: acked (a sample of the rate), or
        failed (`completed=False`: they free their place but say nothing about the rate)."""
        self.in_flight = max(0, self.in_flight - units)
        if completed:
            self.rate.completed(units, self.in_flight)
        elif self.in_flight == 0:
            self.rate.completed(0, 0)

    def _retry_after_s(self, excess_s: float) -> float:
        """Come back once the queue has drained below the target, within the configured bounds,
        spread by up to half again: clients refused together must not all return together."""
        low, high = self.settings.retry_after_min_ms / 1000, self.settings.retry_after_max_ms / 1000
        return min(high, max(low, excess_s) * (1 + 0.5 * random.random()))
