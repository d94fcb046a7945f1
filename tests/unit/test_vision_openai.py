"""The OpenAI vision provider, its limits and the service, against a real HTTP server.

The real `openai` client talks to cluster/doubles/openai_server.py over 127.0.0.1, so retries,
timeouts, status errors and headers take the client's whole HTTP path. The rate limiter and
the circuit breaker are also tested alone with a fake clock: no sleeping for their maths.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest
from pydantic import ValidationError

from actors.errors import ConfigError, DependencyUnavailable, InvalidInput
from actors.vision import (
    CircuitBreaker,
    OpenAIVision,
    PageAnalysis,
    RateLimiter,
    VisionService,
    estimate_image_tokens,
    parse_retry_after,
)
from actors.vision.openai_vision import (
    PAGE_ANALYSIS_SCHEMA,
    PROMPT_VERSION,
    image_token_rates,
)
from configs.vision import VisionSettings
from cluster.doubles.openai_server import PAGE_TYPES, OpenAITestServer

pytestmark = pytest.mark.anyio

SECRET_KEY = "sk-tracemill-vision-DO-NOT-LEAK-5d1e0c7b"
IMAGE = b"\x89PNG\r\n\x1a\n" + b"tracemill screenshot " * 50


def settings_for(server: OpenAITestServer, **overrides: Any) -> VisionSettings:
    values: dict[str, Any] = {
        "provider": "openai",
        "base_url": server.base_url,
        "api_key": SECRET_KEY,
        "timeout_s": 2.0,
        "max_attempts": 3,
        "backoff_base_s": 0.01,
        "backoff_max_s": 3.0,
        "breaker_cooldown_s": 0.3,
    }
    return VisionSettings(**(values | overrides))


async def analyze(settings: VisionSettings, image: bytes = IMAGE) -> Any:
    vision = OpenAIVision(settings)
    try:
        return await vision.analyze(image, "image/png")
    finally:
        await vision.aclose()


# -- the provider against the server -----------------------------------------------------


async def test_ok_call_parses_and_accounts_tokens_and_cost(
    server: OpenAITestServer,
) -> None:
    prices = {"price_input_per_1m": 2.0, "price_output_per_1m": 8.0}
    call = await analyze(settings_for(server, **prices))

    assert call.analysis.page_type in PAGE_TYPES
    stages = PAGE_ANALYSIS_SCHEMA["properties"]["decision_stage"]["enum"]
    assert call.analysis.decision_stage in stages
    assert 0 <= call.analysis.confidence <= 1
    assert call.attempts == 1 and call.model == "gpt-4o-mini"
    assert call.tokens_in > 85 and call.tokens_out > 0
    expected_cost = call.tokens_in * 2.0 / 1e6 + call.tokens_out * 8.0 / 1e6
    assert call.cost_usd == pytest.approx(expected_cost)
    [seen] = server.requests
    assert seen.model == "gpt-4o-mini" and seen.has_image_data_url
    assert seen.response_format_type == "json_schema"
    # A compatible server, not api.openai.com: the older, widely accepted field name.
    assert seen.max_tokens_field == "max_tokens"
    assert seen.authorization == f"Bearer {SECRET_KEY}"


async def test_different_images_get_different_analyses(
    server: OpenAITestServer,
) -> None:
    settings = settings_for(server)
    first = await analyze(settings, b"one image")
    second = await analyze(settings, b"another image")
    assert first.analysis.visible_state != second.analysis.visible_state
    assert hashlib.sha256(b"one image").hexdigest()[:12] in first.analysis.visible_state


async def test_429_with_retry_after_is_retried_after_that_wait(
    server: OpenAITestServer,
) -> None:
    server.script(["429:1"])
    started = time.monotonic()
    call = await analyze(settings_for(server))
    elapsed = time.monotonic() - started

    assert server.request_count == 2 and call.attempts == 2
    assert 0.9 <= elapsed < 5.0


async def test_retry_after_beyond_the_cap_gives_up_at_once(
    server: OpenAITestServer,
) -> None:
    server.script(["429:30"])
    started = time.monotonic()
    with pytest.raises(DependencyUnavailable) as caught:
        await analyze(settings_for(server, backoff_max_s=2.0, max_attempts=4))

    assert time.monotonic() - started < 1.5
    assert server.request_count == 1
    assert caught.value.retry_after_s == pytest.approx(30)
    assert caught.value.details[0]["reason"] == "http_429"


async def test_500s_exhaust_the_attempts(server: OpenAITestServer) -> None:
    server.default = "500"
    with pytest.raises(DependencyUnavailable) as caught:
        await analyze(settings_for(server, max_attempts=3))

    assert server.request_count == 3
    assert "3 attempt(s)" in str(caught.value)
    assert caught.value.details[0]["reason"] == "http_500"


async def test_a_500_then_ok_succeeds_on_the_second_attempt(
    server: OpenAITestServer,
) -> None:
    server.script(["500", "ok"])
    call = await analyze(settings_for(server))
    assert call.attempts == 2 and server.request_count == 2


async def test_timeouts_are_retried_then_fail(server: OpenAITestServer) -> None:
    server.script(["timeout:2", "timeout:2"])
    started = time.monotonic()
    with pytest.raises(DependencyUnavailable) as caught:
        await analyze(settings_for(server, timeout_s=0.5, max_attempts=2))

    assert time.monotonic() - started < 2.5  # two 0.5 s attempts, not two 2 s stalls
    assert server.request_count == 2
    assert caught.value.details[0]["reason"] == "timeout"


async def test_a_timeout_then_ok_succeeds(server: OpenAITestServer) -> None:
    server.script(["timeout:2", "ok"])
    call = await analyze(settings_for(server, timeout_s=0.5))
    assert call.attempts == 2


@pytest.mark.parametrize(
    ("behaviour", "reason"), [("badjson", "not_json"), ("badschema", "schema_mismatch")]
)
async def test_an_invalid_reply_is_retried_once_then_fails(
    server: OpenAITestServer, behaviour: str, reason: str
) -> None:
    server.default = behaviour
    with pytest.raises(DependencyUnavailable) as caught:
        await analyze(settings_for(server, max_attempts=4))

    assert server.request_count == 2  # once more, not max_attempts times
    assert caught.value.details[0]["reason"] == reason


async def test_other_4xx_are_not_retried(server: OpenAITestServer) -> None:
    server.script(["400"])
    with pytest.raises(DependencyUnavailable, match="HTTP 400") as caught:
        await analyze(settings_for(server))
    assert server.request_count == 1 and caught.value.details[0]["reason"] == "http_400"


@pytest.mark.parametrize("status", ["401", "403", "404"])
async def test_misconfiguration_statuses_are_config_errors(
    server: OpenAITestServer, status: str
) -> None:
    server.script([status])
    with pytest.raises(ConfigError, match=f"HTTP {status}"):
        await analyze(settings_for(server))
    assert server.request_count == 1


async def test_bad_media_type_and_empty_image_are_invalid_input(
    server: OpenAITestServer,
) -> None:
    vision = OpenAIVision(settings_for(server))
    with pytest.raises(InvalidInput):
        await vision.analyze(IMAGE, "application/pdf")
    with pytest.raises(InvalidInput):
        await vision.analyze(b"", "image/png")
    await vision.aclose()
    assert server.request_count == 0


async def test_the_key_and_the_image_never_reach_messages_or_logs(
    server: OpenAITestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # the openai client and httpx2 log at DEBUG
    server.script(["401"])
    server.default = "500"
    with pytest.raises(ConfigError) as unauthorised:
        await analyze(settings_for(server))
    with pytest.raises(DependencyUnavailable) as unavailable:
        await analyze(settings_for(server))
    service = VisionService(settings_for(server, max_attempts=1))
    outcome = await service.analyze(IMAGE, "image/png", 1280, 800)
    await service.aclose()

    image_b64 = base64.b64encode(IMAGE).decode()[:40]
    for exc in (unauthorised.value, unavailable.value):
        text = f"{exc} {exc!r} {exc.args} {exc.details}"
        for secret in (SECRET_KEY, SECRET_KEY[-8:], image_b64):
            assert secret not in text
        # No chained openai error: its text may echo part of the key.
        assert exc.__cause__ is None and exc.__suppress_context__
    assert outcome.status == "fallback" and SECRET_KEY not in str(outcome.model_dump())
    assert caplog.records, "expected some log records to check"
    logged = "\n".join(f"{r.getMessage()} {r.args}" for r in caplog.records)
    for secret in (SECRET_KEY, SECRET_KEY[-8:], image_b64):
        assert secret not in logged
    assert SECRET_KEY not in repr(settings_for(server))


async def test_a_missing_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAIVision(VisionSettings(provider="openai"))


async def test_the_client_reads_the_key_from_the_environment(
    server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    await analyze(settings_for(server, api_key=None))
    assert server.requests[0].authorization == "Bearer sk-from-the-environment"


async def test_an_explicit_compatible_server_needs_no_key(
    server: OpenAITestServer,
) -> None:
    await analyze(settings_for(server, api_key=None))
    assert server.requests[0].authorization == "Bearer unset"


def test_the_official_host_gets_max_completion_tokens() -> None:
    vision = OpenAIVision(VisionSettings(provider="openai", api_key="sk-x"))
    assert vision._max_tokens_field == "max_completion_tokens"


def test_the_server_lists_models(server: OpenAITestServer) -> None:
    import openai

    with openai.OpenAI(
        base_url=server.base_url, api_key="sk-x", max_retries=0
    ) as client:
        assert {m.id for m in client.models.list()} >= {"gpt-4o-mini"}


# -- the service: breaker, fallbacks, accounting ---------------------------------------


async def test_failures_open_the_breaker_and_a_probe_closes_it(
    server: OpenAITestServer,
) -> None:
    service = VisionService(settings_for(server, max_attempts=1, breaker_failures=5))
    server.default = "500"
    for _ in range(5):
        outcome = await service.analyze(IMAGE, "image/png", 1280, 800)
        assert outcome.status == "fallback"
        assert outcome.fallback_reason == "error: DependencyUnavailable: http_500"
    assert outcome.breaker_state == "open" and server.request_count == 5

    refused = await service.analyze(IMAGE, "image/png", 1280, 800)
    assert refused.fallback_reason == "breaker_open" and refused.call is None
    assert server.request_count == 5  # refused without reaching the server

    await asyncio.sleep(0.35)  # the 0.3 s cooldown must really pass
    server.default = "ok"
    server.script(["timeout:0.3"])  # a slow probe, so the others arrive while it is out
    calls = (service.analyze(IMAGE, "image/png", 1280, 800) for _ in range(3))
    outcomes = await asyncio.gather(*calls)
    assert sorted(o.status for o in outcomes) == ["fallback", "fallback", "ok"]
    refusals = {o.fallback_reason for o in outcomes if o.status == "fallback"}
    assert refusals == {"breaker_open"}
    assert server.request_count == 6  # exactly one probe

    state = service.state()
    assert state["breaker_state"] == "closed" and state["times_opened"] == 1
    assert state["consecutive_failures"] == 0
    assert state["calls_ok"] == 1 and state["fallbacks"] == 8
    assert state["fallbacks_by_reason"] == {"error": 5, "breaker_open": 3}
    assert state["tokens_in"] > 0 and state["cost_usd"] > 0
    await service.aclose()


async def test_a_failed_probe_reopens_the_breaker(server: OpenAITestServer) -> None:
    service = VisionService(settings_for(server, max_attempts=1, breaker_failures=1))
    server.default = "500"
    await service.analyze(IMAGE, "image/png", 100, 100)
    await asyncio.sleep(0.35)
    probe = await service.analyze(IMAGE, "image/png", 100, 100)
    after = await service.analyze(IMAGE, "image/png", 100, 100)
    assert probe.fallback_reason.startswith("error:") and probe.breaker_state == "open"
    assert after.fallback_reason == "breaker_open"
    assert service.state()["times_opened"] == 2 and server.request_count == 2
    await service.aclose()


async def test_a_config_error_is_a_fallback_not_a_raise(
    server: OpenAITestServer,
) -> None:
    service = VisionService(settings_for(server))
    server.script(["401"])
    outcome = await service.analyze(IMAGE, "image/png", 100, 100)
    assert outcome.fallback_reason == "error: ConfigError: http_401"
    await service.aclose()


async def test_a_long_rate_limit_wait_falls_back_without_calling(
    server: OpenAITestServer,
) -> None:
    # One request a minute: the second would wait ~60 s, longer than a call's deadline.
    service = VisionService(settings_for(server, requests_per_minute=1))
    assert (await service.analyze(IMAGE, "image/png", 100, 100)).status == "ok"
    second = await service.analyze(IMAGE, "image/png", 100, 100)
    assert second.fallback_reason == "rate_limited" and second.breaker_state == "closed"
    assert server.request_count == 1
    await service.aclose()


async def test_invalid_input_still_raises_and_frees_the_probe(
    server: OpenAITestServer,
) -> None:
    service = VisionService(settings_for(server, max_attempts=1, breaker_failures=1))
    server.script(["500"])
    await service.analyze(IMAGE, "image/png", 100, 100)
    await asyncio.sleep(0.35)
    with pytest.raises(InvalidInput):
        # Takes the probe, then raises.
        await service.analyze(IMAGE, "text/html", 100, 100)
    assert (await service.analyze(IMAGE, "image/png", 100, 100)).status == "ok"
    await service.aclose()


# -- pure parts: limiter, breaker, estimates, parsing, models --------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_the_rate_limiter_paces_requests() -> None:
    clock = FakeClock()
    limiter = RateLimiter(requests_per_minute=60, tokens_per_minute=600, clock=clock)
    # A full minute's burst goes at once.
    assert [limiter.reserve(10) for _ in range(60)] == [0.0] * 60
    # Then one a second, queued in order of arrival.
    assert [limiter.reserve(10) for _ in range(3)] == pytest.approx([1.0, 2.0, 3.0])
    clock.now += 10
    assert limiter.wait_time(10) == 0.0


def test_the_token_bucket_paces_by_tokens_and_wait_time_reserves_nothing() -> None:
    clock = FakeClock()
    limiter = RateLimiter(requests_per_minute=1000, tokens_per_minute=600, clock=clock)
    assert limiter.reserve(600) == 0.0
    assert limiter.wait_time(300) == pytest.approx(30.0)  # 10 tokens a second
    assert limiter.wait_time(300) == pytest.approx(30.0)  # still: nothing was reserved
    clock.now += 30
    assert limiter.reserve(300) == 0.0


def test_a_request_bigger_than_the_bucket_is_clamped() -> None:
    clock = FakeClock()
    limiter = RateLimiter(requests_per_minute=1000, tokens_per_minute=100, clock=clock)
    assert limiter.reserve(1_000_000) == 0.0
    # Waits for one whole bucket, not forever.
    assert limiter.wait_time(1_000_000) == pytest.approx(60.0)


def test_settle_returns_unused_tokens() -> None:
    clock = FakeClock()
    limiter = RateLimiter(requests_per_minute=1000, tokens_per_minute=600, clock=clock)
    limiter.reserve(600)
    limiter.settle(estimated=600, actual=150)
    assert limiter.wait_time(450) == 0.0
    assert limiter.wait_time(451) > 0


async def test_acquire_sleeps_the_reserved_wait_and_cancel_gives_it_back() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60, 10_000, clock=clock, sleep=clock.sleep)
    for _ in range(60):
        assert await limiter.acquire(1) == 0.0
    assert await limiter.acquire(1) == pytest.approx(1.0)
    assert clock.now == pytest.approx(1001.0)

    async def never(_seconds: float) -> None:
        await asyncio.Event().wait()

    blocked = RateLimiter(60, 10_000, clock=clock, sleep=never)
    for _ in range(60):
        blocked.reserve(1)
    task = asyncio.ensure_future(blocked.acquire(1))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # 1 s, not 2: the cancelled caller's slot came back.
    assert blocked.wait_time(1) == pytest.approx(1.0)


def test_breaker_transitions() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failures_to_open=3, cooldown_s=10, clock=clock)
    assert breaker.state == "closed" and breaker.allow()
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()  # a success resets the consecutive count
    assert breaker.consecutive_failures == 0
    for _ in range(3):
        breaker.record_failure()
    assert breaker.state == "open" and breaker.opened_count == 1
    assert not breaker.allow()

    clock.now += 9.9
    assert not breaker.allow()
    clock.now += 0.1
    assert breaker.allow() and breaker.state == "half_open"  # the single probe
    assert not breaker.allow()  # everyone else waits for its verdict
    breaker.record_failure()  # the probe failed: open again, fresh cooldown
    assert breaker.state == "open" and breaker.opened_count == 2
    clock.now += 5
    assert not breaker.allow()
    clock.now += 5
    assert breaker.allow()
    breaker.release()  # the probe ended without a verdict: the slot is free again
    assert breaker.state == "half_open" and breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed" and breaker.consecutive_failures == 0
    assert breaker.allow() and breaker.allow()


def test_a_late_failure_does_not_extend_an_open_breakers_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failures_to_open=1, cooldown_s=10, clock=clock)
    breaker.record_failure()
    clock.now += 9
    breaker.record_failure()  # an in-flight call failing after the breaker opened
    clock.now += 1
    assert breaker.allow() and breaker.opened_count == 1


def test_image_token_estimates_follow_the_published_examples() -> None:
    assert estimate_image_tokens(4096, 8192, "low") == 85
    assert estimate_image_tokens(1024, 1024, "high") == 765
    assert estimate_image_tokens(2048, 4096, "high") == 1105
    assert estimate_image_tokens(512, 512, "high") == 255  # never scaled up
    assert estimate_image_tokens(1280, 800, "auto") == 1105  # auto reserves for high
    assert image_token_rates("gpt-4o") == (85, 170)
    assert image_token_rates("gpt-4o-mini-2024-07-18") == (2833, 5667)
    assert estimate_image_tokens(100, 100, "low", base=2833, per_tile=5667) == 2833


def test_retry_after_parsing() -> None:
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "1.5", "retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after": "-4"}) == 0.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
    when = datetime(2030, 1, 1, 12, 0, 30, tzinfo=UTC)
    now = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC).timestamp()
    http_date = {"retry-after": format_datetime(when, usegmt=True)}
    assert parse_retry_after(http_date, now=lambda: now) == 30.0


def test_page_analysis_bounds_and_schema() -> None:
    data = {
        "page_type": "x" * 500,
        "visible_state": "a cart",
        "intent_cues": [f"cue {i}" for i in range(30)],
        "decision_stage": "decision",
        "notable_elements": ["y" * 300],
        "confidence": 0.9,
        "unexpected": "ignored",
    }
    analysis = PageAnalysis.model_validate(data)
    assert len(analysis.page_type) == 200 and len(analysis.intent_cues) == 12
    assert len(analysis.notable_elements[0]) == 120
    with pytest.raises(ValidationError):
        PageAnalysis.model_validate(data | {"decision_stage": "browsing"})
    with pytest.raises(ValidationError):
        PageAnalysis.model_validate(data | {"confidence": 1.5})
    assert set(PAGE_ANALYSIS_SCHEMA["required"]) == set(PageAnalysis.model_fields)
    assert set(PAGE_ANALYSIS_SCHEMA["properties"]) == set(PageAnalysis.model_fields)
    # The analysis cache's key part: derived from the prompts and schema, so it is stable.
    assert PROMPT_VERSION.startswith("pa-") and len(PROMPT_VERSION) == 15


def test_settings_validation() -> None:
    assert VisionSettings().provider == "local"
    with pytest.raises(ValidationError, match="model is required"):
        VisionSettings(provider="openai", model=" ")
    with pytest.raises(ValidationError, match="backoff_base_s"):
        VisionSettings(backoff_base_s=5, backoff_max_s=1)
    with pytest.raises(ValidationError):
        VisionSettings(max_attempts=11)
    with pytest.raises(ValidationError):
        VisionSettings(unknown_field=1)
