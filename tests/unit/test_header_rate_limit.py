"""Rate limits from the provider's headers (actors/batching/ratelimit.py): reset values in
OpenAI's format, and against the OpenAI-compatible test server limiting requests per window,
the moderation client and the vision service slow down before the 429 that a client ignoring
the headers gets."""

from __future__ import annotations

import asyncio

import pytest

from actors.batching.ratelimit import HeaderRateLimiter, parse_reset
from actors.moderation.moderator import Scorer
from actors.vision.service import VisionService
from cluster.doubles.openai_server import OpenAITestServer
from configs.moderation import ModerationSettings
from configs.vision import VisionSettings


@pytest.mark.parametrize(("raw", "seconds"), [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5),
                                              ("0.5", 0.5), ("", None), ("soon", None), ("5x", None), (None, None)])
def test_reset_values(raw: str | None, seconds: float | None) -> None:
    assert parse_reset(raw) == seconds


def test_waits_for_the_reset_only_at_the_reserve() -> None:
    now = [100.0]
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    limiter = HeaderRateLimiter(reserve=1, clock=lambda: now[0], sleep=sleep)
    limiter.observe({"x-ratelimit-remaining-requests": "3", "x-ratelimit-reset-requests": "2s"})
    asyncio.run(limiter.acquire())  # 3 left -> 2
    asyncio.run(limiter.acquire())  # 2 left -> 1
    assert slept == []
    asyncio.run(limiter.acquire())  # 1 left is the reserve: wait for the reset
    assert slept == [2.0] and limiter.waits == 1
    asyncio.run(limiter.acquire())  # a new window, nothing known: go
    assert slept == [2.0]


def _score_all(server: OpenAITestServer, limiter: HeaderRateLimiter, n: int) -> float:
    settings = ModerationSettings(provider="openai", base_url=server.base_url, inputs_per_call=1,
                                  max_attempts=1)

    async def go() -> float:
        scorer = Scorer(settings, limiter)
        started = asyncio.get_running_loop().time()
        try:
            result = await scorer.score([f"text {i}" for i in range(n)])
        finally:
            await scorer.aclose()
        if limiter.reserve >= 0:
            assert result.source == "openai"
        return asyncio.get_running_loop().time() - started

    return asyncio.run(go())


def test_the_client_slows_down_before_the_429(server: OpenAITestServer) -> None:
    window = server.limit_requests(4, 0.5)
    elapsed = _score_all(server, HeaderRateLimiter(reserve=1), 10)
    assert window.refused == 0  # never ran into the limit
    assert server.moderation_inputs == 10 and elapsed >= 0.5  # it waited for at least one reset
    # A client that ignores the headers (a reserve no count reaches) is refused within the first window.
    server.reset()
    window = server.limit_requests(4, 30.0)
    _score_all(server, HeaderRateLimiter(reserve=-10**9), 6)
    assert window.refused >= 1


def _analyse_all(server: OpenAITestServer, n: int) -> dict[str, object]:
    # Fixed buckets far above the server's limit: only the headers can slow the service down.
    settings = VisionSettings(provider="openai", base_url=server.base_url, max_attempts=1, timeout_s=5.0,
                              requests_per_minute=100_000, tokens_per_minute=10_000_000, max_concurrency=4)

    async def go() -> dict[str, object]:
        service = VisionService(settings)
        try:
            outcomes = await asyncio.gather(*(service.analyze(b"RIFF" + bytes([i]) * 40, "image/webp", 640, 400)
                                              for i in range(n)))
        finally:
            await service.aclose()
        return service.state() | {"ok": sum(o.status == "ok" for o in outcomes)}

    return asyncio.run(go())


def test_the_vision_service_slows_down_before_the_429(server: OpenAITestServer) -> None:
    window = server.limit_requests(3, 0.4)
    state = _analyse_all(server, 8)
    assert window.refused == 0 and state["ok"] == 8  # four callers at once, none refused
    assert isinstance(state["header_waits"], int) and state["header_waits"] >= 1


def test_a_probe_without_an_answer_does_not_hold_the_others() -> None:
    now = [0.0]

    async def sleep(s: float) -> None:
        now[0] += s

    async def go() -> float:
        limiter = HeaderRateLimiter(max_wait_s=30.0, clock=lambda: now[0], sleep=sleep)
        await limiter.acquire()  # the probe: nothing known yet
        limiter.settle()  # its call ended without an answer (a dropped connection)
        await limiter.acquire()  # goes at once instead of waiting out max_wait_s
        return now[0]

    assert asyncio.run(go()) == 0.0
