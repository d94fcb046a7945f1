"""The Batch API path (actors/batching/batch.py) against the OpenAI-compatible test server: the
JSONL is uploaded, the batch created and polled with a doubling wait, answers read from the
output file, failed lines (error file) sent again in a new batch, usage summed; lines still
failed after max_rounds are returned as failed."""

from __future__ import annotations

import asyncio
from typing import Any

from actors.batching.batch import BatchOutcome, run_batch
from actors.openai_client import OpenAIApi
from cluster.doubles.openai_server import OpenAITestServer
from configs.batching import BatchSettings
from configs.moderation import ModerationSettings


def _run(server: OpenAITestServer, lines: dict[str, dict[str, Any]], endpoint: str, rounds: int,
         waits: list[float]) -> BatchOutcome:
    async def sleep(s: float) -> None:
        waits.append(s)

    async def go() -> BatchOutcome:
        api = OpenAIApi(ModerationSettings(provider="openai", base_url=server.base_url), name="batch test",
                        gave_up_retry_after_s=1.0)
        try:
            return await run_batch(api, "moderation", endpoint, lines,
                                   BatchSettings(enabled=True, poll_initial_s=0.5, poll_max_s=1.0,
                                                 max_rounds=rounds), sleep=sleep)
        finally:
            await api.aclose()

    return asyncio.run(go())


def test_failed_lines_are_retried_in_a_new_batch(server: OpenAITestServer) -> None:
    lines = {f"s:{i}": {"model": "omni-moderation-latest", "input": [f"text {i} zzharass" if i == 3 else f"t{i}"]}
             for i in range(6)}
    server.batch_fail_once = {"s:1", "s:3"}
    waits: list[float] = []
    out = _run(server, lines, "/v1/moderations", 3, waits)
    assert set(out.answers) == set(lines) and out.failed == {}
    assert len(out.batch_ids) == 2 and out.retried_lines == 2
    assert out.answers["s:3"]["results"][0]["category_scores"]["harassment"] == 0.93
    assert waits == [0.5, 1.0] * 2  # validating -> in_progress -> completed, doubling to the cap, per batch
    assert server.batches[out.batch_ids[1]]["request_counts"] == {"total": 2, "completed": 2, "failed": 0}


def test_lines_failed_after_every_round_are_returned_and_chat_usage_is_summed(server: OpenAITestServer) -> None:
    lines = {f"c:{i}": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"page {i}"}]}
             for i in range(4)}
    server.batch_fail_once = {"c:2"}
    out = _run(server, lines, "/v1/chat/completions", 1, [])
    assert out.failed == {"c:2": "server_error"} and len(out.answers) == 3
    assert out.tokens_in > 0 and out.tokens_out > 0
    assert out.tokens_in == sum(a["usage"]["prompt_tokens"] for a in out.answers.values())
