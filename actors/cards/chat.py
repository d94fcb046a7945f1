"""A JSON answer from an OpenAI-compatible chat model, through the one OpenAI layer, cached
by the sha256 of the whole request so the same call is never made twice.

Cards and sentiment both ask for a small JSON object. The request (model, messages, every
parameter) is hashed; a stored reply to that hash is returned without a call. A reply that is
not the JSON object `check` accepts is retried once (RetryableReply), then the call fails with
DependencyUnavailable like any other: callers fall back to their local answer.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from actors import telemetry
from actors.batching.batch import BatchOutcome
from actors.batching.ratelimit import shared_limiter
from actors.openai_client import OpenAIApi, RetryableReply
from actors.storage import cards_repo
from configs.cards import CardSettings, SentimentSettings

log = logging.getLogger(__name__)
# A batch job for one request: the batcher (actors.batching.collector) puts it with others'.
Batched = Callable[[dict[str, dict[str, Any]]], Awaitable[BatchOutcome]]

__all__ = ["ChatJson", "Reply", "request_sha256"]


@dataclass(frozen=True)
class Reply:
    value: dict[str, Any]
    cached: bool
    tokens_in: int
    tokens_out: int
    batched: bool = False


def request_sha256(request: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class ChatJson:
    def __init__(self, settings: CardSettings | SentimentSettings, *, kind: str, model: str, max_tokens: int,
                 http_client: Any = None) -> None:
        self._kind, self._model, self._max_tokens = kind, model, max_tokens
        self._prices = (settings.price_input_per_1m, settings.price_output_per_1m)
        # Paced by the provider's x-ratelimit-* headers, shared by every task of this worker.
        self._limiter = shared_limiter(f"{kind}:{settings.base_url}", settings.backoff_max_s)
        self._api = OpenAIApi(settings, self._limiter.attach(http_client, settings.timeout_s),
                              name=f"{kind} model", gave_up_retry_after_s=settings.backoff_max_s)

    def cost(self, tokens_in: int, tokens_out: int, factor: float = 1.0) -> float:
        return (tokens_in * self._prices[0] + tokens_out * self._prices[1]) / 1e6 * factor

    async def aclose(self) -> None:
        await self._api.aclose()

    def request(self, system: str, user: str) -> dict[str, Any]:
        return {
            "model": self._model,
            "temperature": 0,
            self._api.max_tokens_field: self._max_tokens,
            "response_format": {"type": "json_object"},
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        }

    async def ask(self, pool: asyncpg.Pool, system: str, user: str,
                  check: Callable[[dict[str, Any]], dict[str, Any]], *,
                  batched: Batched | None = None, discount: float = 1.0) -> Reply:
        """`check` returns the cleaned value or raises ValueError for an unusable reply. With
        `batched`, the request is a Batch API line first (`discount` of the price); a line
        still failed or unusable is then asked the synchronous way."""
        request = self.request(system, user)
        digest = request_sha256(request)
        stored = await cards_repo.cache_get(pool, digest)
        if stored is not None:
            return Reply(check(stored), cached=True, tokens_in=0, tokens_out=0)
        if batched is not None and (reply := await self._from_batch(batched, request, digest, check, discount)):
            await cards_repo.cache_put(pool, digest, self._kind, self._model, reply.value, reply.tokens_in,
                                       reply.tokens_out)
            return reply
        usage = [0, 0]

        async def attempt() -> dict[str, Any]:
            await self._limiter.acquire(self._max_tokens)
            telemetry.model_inflight(self._kind, 1)
            try:
                reply = await self._api.client.chat.completions.create(**request)
            finally:
                self._limiter.settle()
                telemetry.model_inflight(self._kind, -1)
            tokens = (reply.usage.prompt_tokens, reply.usage.completion_tokens) if reply.usage else (0, 0)
            usage[0] += tokens[0]
            usage[1] += tokens[1]
            telemetry.record_model_calls(self._kind, "sync", 1, self.cost(*tokens), *tokens)
            content = reply.choices[0].message.content if reply.choices else None
            return _checked(content, check)

        value = await self._api.call(f"{self._kind} request", attempt)
        await cards_repo.cache_put(pool, digest, self._kind, self._model, value, usage[0], usage[1])
        return Reply(value, cached=False, tokens_in=usage[0], tokens_out=usage[1])

    async def _from_batch(self, batched: Batched, request: dict[str, Any], digest: str,
                          check: Callable[[dict[str, Any]], dict[str, Any]], discount: float) -> Reply | None:
        try:
            outcome = await batched({digest: request})
        except Exception as exc:  # noqa: BLE001 - a Ray or provider failure: the synchronous way answers
            log.warning("%s batch failed; asking the synchronous way: %s", self._kind, type(exc).__name__)
            return None
        body = outcome.answers.get(digest)
        if body is None:
            return None
        usage = body.get("usage") or {}
        tokens = (int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
        telemetry.record_model_cost(self._kind, self.cost(*tokens, factor=discount))
        choices = body.get("choices") or [{}]
        try:
            value = _checked((choices[0].get("message") or {}).get("content"), check)
        except RetryableReply:
            return None
        return Reply(value, cached=False, tokens_in=tokens[0], tokens_out=tokens[1], batched=True)


def _checked(content: str | None, check: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    try:
        value = json.loads(content or "")
        if not isinstance(value, dict):
            raise ValueError("not an object")
        return check(value)
    except ValueError:  # json.JSONDecodeError is one
        raise RetryableReply("unusable_reply") from None
