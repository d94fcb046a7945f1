"""The model under evaluation, asked through an OpenAI-compatible chat-completions API.

Client setup, retries of 408/409/429/5xx, timeouts and dropped connections (Retry-After,
jittered backoff, up to `max_attempts`) and the status → error mapping are the one OpenAI
layer's (actors.openai_client). What is left after the retries:

- 401 / 403 / 404, and 429 `insufficient_quota` → raised (ConfigError, DependencyUnavailable):
  every other example would fail the same way, so the evaluation stops.
- anything else (retries exhausted, a 400 for one oversized example) → `Reply(error=reason)`:
  that example is scored wrong and counted; the evaluator fails the run if too many are.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from actors.errors import DependencyUnavailable
from actors.openai_client import OpenAIApi, provider_detail
from configs.evaluation import EvaluationSettings

__all__ = ["ChatPredictor", "OpenAIChatPredictor", "Reply", "estimate_request_tokens"]

_QUOTA_RETRY_AFTER_S = 3600.0  # an account out of quota waits for a person, not a backoff
_IMAGE_TOKENS = {"low": 85}
_HIGH_DETAIL_TOKENS = 1105  # a 1280x800 screenshot by OpenAI's tile rule


@dataclass(frozen=True)
class Reply:
    text: str | None
    tokens: int | None = None     # prompt + completion, when the host reports usage
    error: str | None = None      # why there is no reply, after all attempts


class ChatPredictor(Protocol):
    async def complete(self, messages: Sequence[Mapping[str, Any]]) -> Reply: ...

    async def aclose(self) -> None: ...


def estimate_request_tokens(messages: Sequence[Mapping[str, Any]], output_budget: int) -> int:
    """Tokens one request may use, for TPM pacing: ~4 bytes a token for text, a flat rate per
    image (a base64 data URL's length says nothing about its tokens), plus the output budget."""
    total = output_budget + 3
    for msg in messages:
        content = msg.get("content")
        parts = content if isinstance(content, list) else [content]
        total += 4
        for part in parts:
            if isinstance(part, str):
                total += len(part.encode()) // 4
            elif isinstance(part, Mapping) and part.get("type") == "image_url":
                detail = (part.get("image_url") or {}).get("detail")
                total += _IMAGE_TOKENS.get(str(detail), _HIGH_DETAIL_TOKENS)
            elif isinstance(part, Mapping):
                total += len(str(part.get("text") or json.dumps(part)).encode()) // 4
    return total


class OpenAIChatPredictor:
    """One chat completion per example, temperature and output budget from the settings."""

    def __init__(self, settings: EvaluationSettings, http_client: Any = None):
        self._settings = settings
        self._api = OpenAIApi(settings, http_client, name="evaluation provider",
                              gave_up_retry_after_s=_QUOTA_RETRY_AFTER_S)

    async def aclose(self) -> None:
        await self._api.aclose()

    async def complete(self, messages: Sequence[Mapping[str, Any]]) -> Reply:
        s, client = self._settings, self._api.client
        request: dict[str, Any] = {
            "model": s.model, "messages": list(messages), "temperature": s.temperature,
            self._api.max_tokens_field: s.max_output_tokens}
        try:
            reply = await self._api.call("chat completion",
                                         lambda: client.chat.completions.create(**request))
        except DependencyUnavailable as exc:
            if provider_detail(exc, "code") == "insufficient_quota":
                raise
            return Reply(None, error=provider_detail(exc, "reason") or exc.code)
        choice = reply.choices[0] if reply.choices else None
        text = choice.message.content if choice is not None else None
        tokens = reply.usage.total_tokens if reply.usage is not None else None
        return Reply(text, tokens=tokens, error=None if choice is not None else "no_choice")

