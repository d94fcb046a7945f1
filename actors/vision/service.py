"""One process's gateway to the vision provider: pacing, failure isolation, accounting.

`VisionService` is a plain class so that it can be wrapped as a Ray async actor (one per
cluster, or a few) and tested without Ray. Its constructor takes only picklable settings
(and an optional HTTP client for tests); the openai client is built in the process that runs
it. It never raises for a provider failure: the caller analyses locally instead and records
the `fallback_reason` this returns, so the dataset says which labels came from where.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from actors import telemetry
from actors.batching.ratelimit import HeaderRateLimiter
from actors.errors import ConfigError, DependencyUnavailable, TracemillError
from actors.logs import setup_logging
from actors.vision.limits import CircuitBreaker, RateLimiter
from actors.vision.openai_vision import OpenAIVision, VisionCall
from configs.vision import VisionSettings

__all__ = ["VisionOutcome", "VisionService"]

log = logging.getLogger(__name__)


class VisionOutcome(BaseModel):
    """What became of one request: the provider's analysis, or why we fell back."""

    model_config = ConfigDict(frozen=True)

    status: Literal["ok", "fallback"]
    call: VisionCall | None = None
    # "breaker_open", "rate_limited" or "error: <ExceptionClass>: <reason>" (no secrets).
    fallback_reason: str | None = None
    breaker_state: str


class VisionService:
    def __init__(self, settings: VisionSettings, http_client: Any = None):
        setup_logging("vision")
        self._settings = settings
        # Paced by what the provider says is left (x-ratelimit-* on every answer, read by a hook
        # on the HTTP client); the fixed buckets below are only a ceiling the operator sets.
        self._headers = HeaderRateLimiter(max_wait_s=settings.timeout_s)
        self._provider = OpenAIVision(settings, self._headers.attach(http_client, settings.timeout_s))
        self._limiter = RateLimiter(
            settings.requests_per_minute, settings.tokens_per_minute
        )
        self._breaker = CircuitBreaker(
            settings.breaker_failures, settings.breaker_cooldown_s
        )
        self._slots = asyncio.Semaphore(settings.max_concurrency)
        self._calls_ok = 0
        self._fallbacks: Counter[str] = Counter()
        self._tokens_in = 0
        self._tokens_out = 0
        self._cost_usd = 0.0

    async def analyze(
        self, image: bytes, media_type: str, width: int, height: int
    ) -> VisionOutcome:
        """Analyse one screenshot, or say why not. InvalidInput (a caller bug) still raises."""
        async with self._slots:
            # Decided after taking a slot, so a call queued behind the semaphore never holds
            # the breaker's single half-open probe while it waits.
            if not self._breaker.allow():
                return self._fallback("breaker_open")
            try:
                estimate = self._provider.estimate_tokens(width, height)
                # Waiting longer for a slot than one call may take is worse than answering
                # locally now; nothing is reserved when we decline.
                wait = max(self._limiter.wait_time(estimate), self._headers.wait_time(estimate))
                if wait > self._settings.timeout_s:
                    self._breaker.release()
                    return self._fallback("rate_limited")
                await self._limiter.acquire(estimate)
                await self._headers.acquire(estimate)
                telemetry.model_inflight("vision", 1)
                try:
                    call = await self._provider.analyze(image, media_type)
                finally:
                    self._headers.settle()
                    telemetry.model_inflight("vision", -1)
            except (DependencyUnavailable, ConfigError) as exc:
                self._breaker.record_failure()
                return self._fallback(f"error: {type(exc).__name__}: {_reason(exc)}")
            except BaseException:
                # No verdict on the provider (bad input, cancellation): free the probe slot.
                self._breaker.release()
                raise
            self._breaker.record_success()
            self._limiter.settle(estimate, call.tokens_in + call.tokens_out)
            self._calls_ok += 1
            self._tokens_in += call.tokens_in
            self._tokens_out += call.tokens_out
            self._cost_usd += call.cost_usd
            telemetry.record_model_calls("vision", "sync", call.attempts, call.cost_usd, call.tokens_in,
                                         call.tokens_out)
            return VisionOutcome(
                status="ok", call=call, breaker_state=self._breaker.state
            )

    def state(self) -> dict[str, Any]:
        """Counters for /metrics and the dashboard: JSON-able, no secrets."""
        return {
            "model": self._settings.model,
            "breaker_state": self._breaker.state,
            "consecutive_failures": self._breaker.consecutive_failures,
            "times_opened": self._breaker.opened_count,
            "calls_ok": self._calls_ok,
            "fallbacks": sum(self._fallbacks.values()),
            "fallbacks_by_reason": dict(self._fallbacks),
            "tokens_in": self._tokens_in,
            "tokens_out": self._tokens_out,
            "cost_usd": round(self._cost_usd, 6),
            "header_waits": self._headers.waits,
            "header_waited_s": round(self._headers.waited_s, 3),
        }

    async def aclose(self) -> None:
        await self._provider.aclose()

    def _fallback(self, reason: str) -> VisionOutcome:
        # Count by kind ("error" lumps statuses together) to keep the metric's labels few.
        kind = reason.split(":", 1)[0]
        self._fallbacks[kind] += 1
        # Errors are news; refusals while the breaker is open repeat for every screenshot.
        level = logging.WARNING if kind == "error" else logging.DEBUG
        log.log(level, "vision fallback: %s (breaker %s)", reason, self._breaker.state)
        return VisionOutcome(
            status="fallback", fallback_reason=reason, breaker_state=self._breaker.state
        )


def _reason(exc: TracemillError) -> str:
    for detail in exc.details:
        if isinstance(detail, dict) and isinstance(detail.get("reason"), str):
            return detail["reason"]
    return exc.code
