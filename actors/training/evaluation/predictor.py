"""The model under evaluation, asked through an OpenAI-compatible chat-completions API.

Retries of 408/409/429/5xx, timeouts and dropped connections are the openai client's own
(`max_retries = max_attempts - 1`, exponential backoff, Retry-After honoured): an evaluation
only needs each example answered eventually, not the fine-grained fallback policy of
screenshot analysis (actors/vision/openai_vision.py). What is left after the retries is
classified the same way as there:

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

import openai

from actors.errors import ConfigError, DependencyUnavailable
from configs.evaluation import EvaluationSettings

__all__ = ["ChatPredictor", "OpenAIChatPredictor", "Reply", "estimate_request_tokens"]

_FATAL_STATUSES = frozenset({401, 403, 404})
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
        self._secret = settings.api_key.get_secret_value() if settings.api_key else None
        self._client = self._build_client(http_client)
        host = self._client.base_url.host
        # As in the vision provider: OpenAI wants the new field name, compatible hosts the old.
        official = host == "api.openai.com" or host.endswith(".openai.azure.com")
        self._max_tokens_field = "max_completion_tokens" if official else "max_tokens"

    def _build_client(self, http_client: Any) -> openai.AsyncOpenAI:
        s = self._settings
        kwargs: dict[str, Any] = {"timeout": s.timeout_s, "max_retries": s.max_attempts - 1,
                                  "http_client": http_client}
        try:
            # None lets the client read OPENAI_API_KEY / OPENAI_BASE_URL itself.
            return openai.AsyncOpenAI(api_key=self._secret, base_url=s.base_url, **kwargs)
        except openai.OpenAIError:
            if s.base_url:
                # A compatible server (vLLM, Ollama) usually wants no key; the client insists.
                return openai.AsyncOpenAI(api_key="unset", base_url=s.base_url, **kwargs)
        raise ConfigError("no API key for the openai evaluation provider: set evaluation.api_key "
                          "or OPENAI_API_KEY (or base_url for a server that needs no key)")

    async def aclose(self) -> None:
        await self._client.close()

    async def complete(self, messages: Sequence[Mapping[str, Any]]) -> Reply:
        s = self._settings
        try:
            reply = await self._client.chat.completions.create(
                model=s.model, messages=list(messages), temperature=s.temperature,  # type: ignore[arg-type]
                **{self._max_tokens_field: s.max_output_tokens})
        except openai.APITimeoutError:
            return Reply(None, error="timeout")
        except openai.APIConnectionError:
            return Reply(None, error="connection_error")
        except openai.APIStatusError as exc:
            self._raise_if_fatal(exc)
            return Reply(None, error=f"http_{exc.status_code}")
        choice = reply.choices[0] if reply.choices else None
        text = choice.message.content if choice is not None else None
        tokens = reply.usage.total_tokens if reply.usage is not None else None
        return Reply(text, tokens=tokens, error=None if choice is not None else "no_choice")

    def _raise_if_fatal(self, exc: openai.APIStatusError) -> None:
        status = exc.status_code
        if status in _FATAL_STATUSES:
            what = {401: "the API key was refused", 403: "the key may not use this model",
                    404: f"the host does not know model {self._settings.model!r}"}[status]
            # Our own words only: OpenAI echoes part of a wrong key in its message.
            raise ConfigError(f"evaluation provider answered {status}: {what}") from None
        body = exc.body if isinstance(exc.body, dict) else {}
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        if status == 429 and (exc.code or inner.get("code")) == "insufficient_quota":
            raise DependencyUnavailable("evaluation provider: the account is out of quota",
                                        retry_after_s=3600.0) from None
