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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from actors.openai_client import OpenAIApi, RetryableReply
from actors.storage import cards_repo
from configs.openai import OpenAISettings

__all__ = ["ChatJson", "Reply", "request_sha256"]


@dataclass(frozen=True)
class Reply:
    value: dict[str, Any]
    cached: bool
    tokens_in: int
    tokens_out: int


def request_sha256(request: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class ChatJson:
    def __init__(self, settings: OpenAISettings, *, kind: str, model: str, max_tokens: int,
                 http_client: Any = None) -> None:
        self._kind, self._model, self._max_tokens = kind, model, max_tokens
        self._api = OpenAIApi(settings, http_client, name=f"{kind} model",
                              gave_up_retry_after_s=settings.backoff_max_s)

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
                  check: Callable[[dict[str, Any]], dict[str, Any]]) -> Reply:
        """`check` returns the cleaned value or raises ValueError for an unusable reply."""
        request = self.request(system, user)
        digest = request_sha256(request)
        stored = await cards_repo.cache_get(pool, digest)
        if stored is not None:
            return Reply(check(stored), cached=True, tokens_in=0, tokens_out=0)
        usage = [0, 0]

        async def attempt() -> dict[str, Any]:
            reply = await self._api.client.chat.completions.create(**request)
            if reply.usage is not None:
                usage[0] += reply.usage.prompt_tokens
                usage[1] += reply.usage.completion_tokens
            content = reply.choices[0].message.content if reply.choices else None
            try:
                value = json.loads(content or "")
                if not isinstance(value, dict):
                    raise ValueError("not an object")
                return check(value)
            except ValueError:  # json.JSONDecodeError is one
                raise RetryableReply("unusable_reply") from None

        value = await self._api.call(f"{self._kind} request", attempt)
        await cards_repo.cache_put(pool, digest, self._kind, self._model, value, usage[0], usage[1])
        return Reply(value, cached=False, tokens_in=usage[0], tokens_out=usage[1])
