"""The batcher (actors/batching/collector.py) against the OpenAI-compatible test server: vision
lines of two finalisations that ask at once go in one batch job, the failed lines are retried in
a new batch, and each caller gets its own answers back (as VisionCalls at the batch price); a
card line answered by a chat model; the line a caller's answer is missing from goes back."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from actors.batching.batch import BatchOutcome
from actors.batching.collector import BatchCollector
from actors.cards.chat import _checked
from actors.cards.step import check_card
from actors.vision.openai_vision import OpenAIVision
from cluster.doubles.openai_server import OpenAITestServer
from configs.batching import BatchSettings
from configs.cards import CardSettings
from configs.vision import VisionSettings

_QUICK = BatchSettings(enabled=True, kinds=("vision", "card"), collect_s=0.05, poll_initial_s=0.01,
                       poll_max_s=0.02)


def _frame(i: int) -> bytes:
    return b"RIFF" + i.to_bytes(4, "little") + b"WEBPVP8 " + bytes(32)


def test_two_sessions_share_one_job_and_failed_lines_are_retried(server: OpenAITestServer) -> None:
    vision = VisionSettings(provider="openai", base_url=server.base_url, price_input_per_1m=1.0,
                            price_output_per_1m=2.0)
    maker = OpenAIVision(vision)
    a = {f"a-shot-{k}": maker.request(_frame(k), "image/webp") for k in range(3)}
    b = {f"b-shot-{k}": maker.request(_frame(10 + k), "image/webp") for k in range(2)}
    server.batch_fail_once = {"0/a-shot-1", "1/b-shot-0"}  # the job's names: caller index / line

    async def go() -> tuple[BatchOutcome, BatchOutcome, int]:
        collector = BatchCollector(_QUICK, {"vision": vision})
        try:
            first, second = await asyncio.gather(collector.submit("vision", "/v1/chat/completions", a),
                                                 collector.submit("vision", "/v1/chat/completions", b))
            return first, second, collector.jobs
        finally:
            await collector.aclose()
            await maker.aclose()

    first, second, jobs = asyncio.run(go())
    assert jobs == 1 and len(server.batches) == 2  # one job: the batch, then the retry of its 2 failed lines
    assert first.batch_ids == second.batch_ids
    assert set(first.answers) == set(a) and set(second.answers) == set(b)
    assert first.failed == {} == second.failed
    assert first.retried == {"a-shot-1"} and second.retried == {"b-shot-0"}
    calls = [maker.from_batch(body, _QUICK.discount) for body in first.answers.values()]
    assert all(c is not None for c in calls)
    for call in calls:
        assert call is not None
        full = call.tokens_in * 1.0 / 1e6 + call.tokens_out * 2.0 / 1e6
        assert abs(call.cost_usd - full * 0.5) < 1e-12  # the batch price
    assert first.tokens_in == sum(c.tokens_in for c in calls if c is not None)
    assert maker.from_batch({"choices": []}, 0.5) is None  # unusable: the caller asks the synchronous way


def test_a_card_line_and_a_line_failed_in_every_round(server: OpenAITestServer) -> None:
    card = {"title": "Checkout on shop.test", "caption": "Searched and paid. It ended well."}
    server.respond_as("card-model-h6", lambda _messages: json.dumps(card))
    settings = CardSettings(provider="openai", base_url=server.base_url, model="card-model-h6")
    body: dict[str, Any] = {"model": "card-model-h6", "messages": [{"role": "user", "content": "facts"}]}
    server.batch_fail_once = {"0/lost"}
    once = BatchSettings(**(_QUICK.model_dump() | {"max_rounds": 1}))

    async def go() -> BatchOutcome:
        collector = BatchCollector(once, {"card": settings})
        try:
            return await collector.submit("card", "/v1/chat/completions", {"sha-card": body, "lost": body})
        finally:
            await collector.aclose()

    out = asyncio.run(go())
    assert out.failed == {"lost": "server_error"}
    answer = out.answers["sha-card"]
    assert _checked(answer["choices"][0]["message"]["content"], check_card) == card
    assert out.tokens_in == answer["usage"]["prompt_tokens"] > 0
