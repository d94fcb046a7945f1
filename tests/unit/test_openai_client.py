"""The one OpenAI layer (actors.openai_client) on its own: retries, waits, status mapping, scrubbing.

The real `openai` client goes either to cluster/doubles/openai_server.py over 127.0.0.1, or,
where a reply the test server cannot script is needed (a quota error, an echoed key, a
dropped connection), through an httpx MockTransport given as `http_client=`: that fakes only
the remote vendor, never our code. Sleeps are recorded instead of slept, so waits are exact.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from actors.errors import ConfigError, DependencyUnavailable, InvalidInput, NotFound
from actors.openai_client import (
    OpenAIApi,
    RetryableReply,
    provider_detail,
    short_code,
)
from cluster.doubles.openai_server import OpenAITestServer
from configs.evaluation import EvaluationSettings
from configs.finetune import FineTuneSettings
from configs.openai import OpenAISettings, openai_from_env
from configs.vision import VisionSettings

pytestmark = pytest.mark.anyio

SECRET = "sk-tracemill-layer-DO-NOT-LEAK-41c9e2aa"
MESSAGES = [{"role": "user", "content": "hello"}]


def settings(base_url: str | None = "http://vendor.test/v1", **overrides: Any) -> OpenAISettings:
    values: dict[str, Any] = {
        "base_url": base_url,
        "api_key": SECRET,
        "timeout_s": 2.0,
        "max_attempts": 3,
        "backoff_base_s": 0.1,
        "backoff_max_s": 3.0,
    }
    return OpenAISettings(**(values | overrides))


class Recorder:
    """A sleep that only records how long it was asked to wait."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def api_for(
    s: OpenAISettings,
    handler: Callable[[httpx.Request], httpx.Response] | None = None,
    **kwargs: Any,
) -> OpenAIApi:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler)) if handler else None
    kwargs.setdefault("name", "test provider")
    kwargs.setdefault("gave_up_retry_after_s", 99.0)
    return OpenAIApi(s, http, **kwargs)


def answers(*replies: httpx.Response) -> tuple[Callable[[httpx.Request], httpx.Response], list[str]]:
    """A vendor that answers `replies` in order (the last one from then on), and its log."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization", ""))
        reply = replies[min(len(seen), len(replies)) - 1]
        # A fresh response each time: the client closes the one it was given.
        return httpx.Response(reply.status_code, headers=reply.headers, content=reply.content)

    return handler, seen


def error(status: int, code: str | None = None, message: str = "no", **headers: str) -> httpx.Response:
    body = {"error": {"message": message, "type": "x", "param": None, "code": code}}
    return httpx.Response(status, json=body, headers=headers)


def completion(content: str = "{}") -> httpx.Response:
    return httpx.Response(200, json={
        "id": "c1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": content}}],
    })


async def chat(api: OpenAIApi, **kwargs: Any) -> Any:
    return await api.call(
        "chat", lambda: api.client.chat.completions.create(model="m", messages=MESSAGES), **kwargs
    )


# -- retries and waits ------------------------------------------------------------------


async def test_retry_after_is_waited_then_jittered_backoff(server: OpenAITestServer) -> None:
    sleep = Recorder()
    api = api_for(settings(server.base_url), sleep=sleep, rng=lambda: 0.5)
    server.script(["429:2", "503", "ok"])
    try:
        reply = await chat(api)
    finally:
        await api.aclose()
    assert reply.choices[0].message.content
    assert server.request_count == 3  # the client itself never retries: max_retries=0
    # The server's 2 s exactly, then half (rng) of the second attempt's cap of 0.2 s.
    assert sleep.waits == [2.0, pytest.approx(0.1)]


async def test_retry_after_ms_and_http_dates_are_honoured() -> None:
    sleep = Recorder()
    handler, _ = answers(
        error(429, **{"retry-after-ms": "250", "retry-after": "9"}),
        error(503, **{"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}),  # long past: no wait
        completion(),
    )
    api = api_for(settings(), handler, sleep=sleep)
    await chat(api)
    assert sleep.waits == [0.25, 0.0]


async def test_jittered_waits_stay_within_the_doubling_cap() -> None:
    s = settings(max_attempts=6, backoff_base_s=0.1, backoff_max_s=0.5)
    caps = [0.1, 0.2, 0.4, 0.5, 0.5]
    at_most, at_least = Recorder(), Recorder()
    for sleep, rng in ((at_most, lambda: 1.0), (at_least, lambda: 0.0)):
        handler, seen = answers(error(500))
        with pytest.raises(DependencyUnavailable):
            await chat(api_for(s, handler, sleep=sleep, rng=rng))
        assert len(seen) == 6
    assert at_most.waits == pytest.approx(caps) and at_least.waits == [0.0] * 5

    jittered = Recorder()
    handler, _ = answers(error(500))
    with pytest.raises(DependencyUnavailable):
        await chat(api_for(s, handler, sleep=jittered, rng=random.Random(7).random))
    assert all(0 <= w <= cap for w, cap in zip(jittered.waits, caps, strict=True))
    assert len(set(jittered.waits)) == 5  # really random, not the cap every time


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503])
async def test_retryable_statuses_exhaust_the_attempts(status: int) -> None:
    handler, seen = answers(error(status))
    with pytest.raises(DependencyUnavailable) as caught:
        await chat(api_for(settings(max_attempts=3), handler, sleep=Recorder()))
    assert len(seen) == 3 and "3 attempt(s)" in str(caught.value)
    assert caught.value.details == [{"provider": "openai", "reason": f"http_{status}"}]
    # When to come back: the cap of the last wait, not a made-up figure.
    assert caught.value.retry_after_s == pytest.approx(0.4)


async def test_a_retry_after_beyond_the_cap_gives_up_at_once() -> None:
    handler, seen = answers(error(429, "rate_limit_exceeded", **{"retry-after": "120"}))
    with pytest.raises(DependencyUnavailable) as caught:
        await chat(api_for(settings(backoff_max_s=3.0, max_attempts=5), handler, sleep=Recorder()))
    assert len(seen) == 1 and caught.value.retry_after_s == 120
    assert caught.value.details[0] == {
        "provider": "openai", "reason": "http_429", "code": "rate_limit_exceeded"}


def failing(*kinds: str) -> Callable[[httpx.Request], httpx.Response]:
    """A vendor that times out or drops the connection as `kinds` say, then answers."""
    plan = list(kinds)

    def handler(request: httpx.Request) -> httpx.Response:
        kind = plan.pop(0) if plan else "ok"
        if kind == "timeout":
            raise httpx.ReadTimeout("slow", request=request)
        if kind == "drop":
            raise httpx.ConnectError("refused", request=request)
        return completion()

    return handler


async def test_timeouts_and_dropped_connections_are_retried() -> None:
    sleep = Recorder()
    reply = await chat(api_for(settings(), failing("timeout", "drop"), sleep=sleep))
    assert reply.choices and len(sleep.waits) == 2

    for kind, reason in (("timeout", "timeout"), ("drop", "connection_error")):
        with pytest.raises(DependencyUnavailable) as caught:
            await chat(api_for(settings(max_attempts=2), failing(kind, kind), sleep=sleep))
        assert caught.value.details[0]["reason"] == reason


async def test_a_stalled_reply_is_abandoned_at_the_attempt_deadline(
    server: OpenAITestServer,
) -> None:
    server.script(["timeout:3", "timeout:3"])
    api = api_for(settings(server.base_url, timeout_s=0.3, max_attempts=2), sleep=Recorder())
    try:
        with pytest.raises(DependencyUnavailable) as caught:
            await chat(api)
    finally:
        await api.aclose()
    assert server.request_count == 2 and caught.value.details[0]["reason"] == "timeout"


async def test_a_retryable_reply_is_retried_with_its_reason() -> None:
    handler, seen = answers(completion("not json"))

    async def parsed() -> Any:
        reply = await api.client.chat.completions.create(model="m", messages=MESSAGES)
        raise RetryableReply(f"unusable:{len(reply.choices)}")

    api = api_for(settings(max_attempts=2), handler, sleep=Recorder())
    with pytest.raises(DependencyUnavailable) as caught:
        await api.call("parse", parsed)
    assert len(seen) == 2 and caught.value.details[0]["reason"] == "unusable:1"


# -- status → error ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected", "words"),
    [(401, ConfigError, "credentials refused"), (403, ConfigError, "credentials refused"),
     (404, ConfigError, "not found")],
)
async def test_misconfiguration_statuses_are_config_errors_naming_the_section(
    status: int, expected: type[Exception], words: str
) -> None:
    handler, seen = answers(error(status, "invalid_api_key"))
    with pytest.raises(expected) as caught:
        await chat(api_for(VisionSettings(base_url="http://vendor.test/v1", api_key=SECRET), handler))
    assert len(seen) == 1
    text = str(caught.value)
    assert words in text and f"HTTP {status} invalid_api_key" in text and "vision.api_key" in text


async def test_a_callers_map_decides_what_a_status_means() -> None:
    errors = {404: NotFound, 422: InvalidInput}
    for status, expected in ((404, NotFound), (422, InvalidInput)):
        handler, seen = answers(error(status))
        with pytest.raises(expected, match=f"HTTP {status}"):
            await chat(api_for(settings(), handler), errors=errors)
        assert len(seen) == 1
    handler, _ = answers(error(401))  # not in the caller's map: a plain refusal
    with pytest.raises(DependencyUnavailable):
        await chat(api_for(settings(), handler), errors=errors)


@pytest.mark.parametrize(("reply", "code"), [(error(400), ""), (error(429, "insufficient_quota"),
                                                                "insufficient_quota")])
async def test_refusals_are_not_retried_and_say_when_to_come_back(
    reply: httpx.Response, code: str
) -> None:
    handler, seen = answers(reply)
    with pytest.raises(DependencyUnavailable, match=f"rejected chat \\(HTTP {reply.status_code}") as caught:
        await chat(api_for(settings(max_attempts=4), handler, gave_up_retry_after_s=42.0))
    assert len(seen) == 1 and caught.value.retry_after_s == 42.0
    assert provider_detail(caught.value, "code") == code
    assert provider_detail(caught.value, "reason") == f"http_{reply.status_code}"


# -- secrets ------------------------------------------------------------------------------


async def test_the_key_never_reaches_messages_details_or_causes() -> None:
    # OpenAI echoes part of a wrong key in its message; a hostile host might echo all of it.
    echo = f"Incorrect API key provided: {SECRET}"
    raised = []
    for reply in (error(401, echo, echo), error(400, SECRET, echo), error(500, None, echo)):
        api = api_for(settings(max_attempts=1), answers(reply)[0])
        with pytest.raises((ConfigError, DependencyUnavailable)) as caught:
            # The key even in our own words ("what") is scrubbed: the last line of defence.
            await api.call(f"call with {SECRET}", api.client.models.list)
        raised.append(caught.value)
    for exc in raised:
        text = f"{exc} {exc!r} {exc.args} {exc.details}"
        assert SECRET not in text and SECRET[-8:] not in text and "Incorrect" not in text
        assert "***" in str(exc)
        assert exc.__cause__ is None and exc.__suppress_context__


def test_short_code_keeps_only_machine_codes() -> None:
    import openai

    request = httpx.Request("GET", "http://vendor.test/v1/models")

    def status_error(code: object) -> openai.APIStatusError:
        response = httpx.Response(400, request=request)
        return openai.APIStatusError("x", response=response, body={"error": {"code": code}})

    assert short_code(status_error("model_not_found")) == "model_not_found"
    assert short_code(status_error("has spaces: sk-123")) == ""
    assert short_code(status_error(42)) == ""
    assert short_code(status_error("x" * 65)) == ""


# -- client setup -------------------------------------------------------------------------


def test_a_missing_key_is_a_config_error_unless_a_compatible_host_is_named() -> None:
    with pytest.raises(ConfigError, match="set evaluation.api_key or OPENAI_API_KEY"):
        api_for(EvaluationSettings(model="m"))
    keyless = EvaluationSettings(model="m", base_url="http://vendor.test/v1")
    assert api_for(keyless).client.api_key == "unset"
    with pytest.raises(ConfigError, match="finetune.api_key") as caught:
        api_for(FineTuneSettings(base_url="http://vendor.test/v1"), require_key=True)
    assert "base_url" not in str(caught.value)


async def test_the_client_reads_the_environment_when_settings_leave_it_none(
    server: OpenAITestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    api = api_for(settings(base_url=None, api_key=None))
    try:
        await chat(api)
    finally:
        await api.aclose()
    assert server.requests[0].authorization == "Bearer sk-from-the-environment"


def test_the_output_budget_field_follows_the_host() -> None:
    assert api_for(settings(base_url=None)).max_tokens_field == "max_completion_tokens"
    azure = settings("https://team.openai.azure.com/openai/v1")
    assert api_for(azure).max_tokens_field == "max_completion_tokens"
    assert api_for(settings()).max_tokens_field == "max_tokens"


# -- the settings base ------------------------------------------------------------------


def test_every_callers_settings_share_the_base_and_keep_their_bounds() -> None:
    for model in (VisionSettings, FineTuneSettings, EvaluationSettings):
        assert issubclass(model, OpenAISettings)
    assert (VisionSettings().timeout_s, FineTuneSettings().timeout_s) == (30.0, 120.0)
    assert FineTuneSettings(max_attempts=20).max_attempts == 20
    with pytest.raises(ValidationError):
        VisionSettings(max_attempts=11)
    with pytest.raises(ValidationError, match="evaluation.backoff_base_s"):
        EvaluationSettings(model="m", backoff_base_s=5, backoff_max_s=1)
    with pytest.raises(ValidationError):
        OpenAISettings(unknown=1)  # type: ignore[call-arg]
    assert SECRET not in repr(settings())


def test_openai_from_env_maps_only_what_is_set() -> None:
    env = {"OPENAI_BASE_URL": "http://h/v1", "OPENAI_API_KEY": "", "OTHER": "x"}
    assert openai_from_env(env) == {"base_url": "http://h/v1"}
