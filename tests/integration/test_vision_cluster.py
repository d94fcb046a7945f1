"""The `openai` vision provider inside the cluster: a Ray task, the VisionService actor, the real
`openai` client and a local OpenAI-compatible server over HTTP. Analyses are cached by image
hash; 429s, 500s and timeouts open the breaker and every fallback is recorded."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import ray

from actors.processing.tasks import vision_task
from configs.settings import TracemillSettings
from tests.support.stack import run_db
from tests.integration.test_processing import record, wait_terminal
from tests.support.client import Api
from cluster.doubles.openai_server import OpenAITestServer
from tests.support.sessions import shop_session


@pytest.fixture(scope="module")
def openai_server() -> Iterator[OpenAITestServer]:
    with OpenAITestServer() as server:
        yield server


def openai_settings(stack: Any, server: OpenAITestServer, **vision: Any) -> TracemillSettings:
    """The stack's settings with the openai provider, in a namespace of its own so that the
    test gets a fresh VisionService (breaker closed, its own limits)."""
    data = stack.settings.to_args()
    data["shards"]["namespace"] = f"vision-test-{uuid.uuid4().hex[:8]}"
    data["processing"]["vision"] = {"provider": "openai", "base_url": server.base_url,
                                    "api_key": "sk-test-not-a-real-key", "backoff_base_s": 0.01,
                                    "backoff_max_s": 0.5, **vision}
    return TracemillSettings.build(data)


def finished_session(api: Api, screenshots: int) -> str:
    events, shots = shop_session(100, screenshots)
    sid = record(api, events, shots, type="human", task="buy a kettle")
    assert wait_terminal(api, sid)["status"] in ("ready", "rejected")
    return sid


def frames(stack: Any, sid: str) -> list[Any]:
    return run_db(stack, "SELECT screenshot_id, vision_source, vision, near_duplicate_of FROM screenshots"
                         " WHERE session_id = $1 ORDER BY screenshot_id", sid)


def forget_vision(stack: Any, sid: str) -> None:
    run_db(stack, "UPDATE screenshots SET vision = NULL, vision_source = NULL WHERE session_id = $1", sid)


def test_frames_are_analysed_once_and_cached_by_image(api: Api, stack: Any, openai_server: OpenAITestServer) -> None:
    openai_server.reset()
    sid = finished_session(api, 8)
    distinct = [f for f in frames(stack, sid) if f["near_duplicate_of"] is None]
    settings = openai_settings(stack, openai_server)
    forget_vision(stack, sid)
    ray.get(vision_task.remote(settings, uuid.UUID(sid)), timeout=120)
    assert openai_server.request_count == len(distinct) >= 2
    assert all(r.has_image_data_url for r in openai_server.requests)
    assert {f["vision_source"] for f in frames(stack, sid)} == {"openai"}
    calls = run_db(stack, "SELECT outcome, tokens_in, tokens_out, cost_usd FROM vision_calls WHERE session_id = $1", sid)
    assert len(calls) == len(distinct) and all(c["outcome"] == "ok" and c["tokens_in"] > 0 and c["cost_usd"] > 0 for c in calls)

    forget_vision(stack, sid)  # the same pictures again: answered from the cache
    ray.get(vision_task.remote(settings, uuid.UUID(sid)), timeout=120)
    assert openai_server.request_count == len(distinct)
    assert {f["vision_source"] for f in frames(stack, sid) if f["near_duplicate_of"] is None} == {"cache"}


def test_failures_open_the_breaker_and_fall_back_to_local(api: Api, stack: Any, openai_server: OpenAITestServer) -> None:
    openai_server.reset()
    openai_server.script(["429:0", "500", "timeout:3", "500", "429:0"])
    openai_server.default = "500"
    sid = finished_session(api, 10)
    distinct = [f for f in frames(stack, sid) if f["near_duplicate_of"] is None]
    assert len(distinct) >= 7
    # Another model name: the cache (by image and model) must not answer for the failing server.
    settings = openai_settings(stack, openai_server, model="breaker-test", max_attempts=1, timeout_s=0.5, max_concurrency=1,
                               breaker_failures=5, breaker_cooldown_s=600)
    forget_vision(stack, sid)
    ray.get(vision_task.remote(settings, uuid.UUID(sid)), timeout=120)
    assert openai_server.request_count == 5  # then the breaker stood between us and the server
    calls = run_db(stack, "SELECT outcome, fallback_reason FROM vision_calls WHERE session_id = $1 ORDER BY call_id", sid)
    assert [c["outcome"] for c in calls] == ["fallback"] * len(distinct)
    reasons = [c["fallback_reason"] for c in calls]
    assert all(r.startswith("error:") for r in reasons[:5]) and set(reasons[5:]) == {"breaker_open"}
    assert {f["vision_source"] for f in frames(stack, sid)} == {"local_fallback"}
