"""Screenshot analysis by an OpenAI-compatible chat-completions API.

Client setup, retries (Retry-After, jittered backoff), the status → error mapping and the
scrubbing of secrets are the one OpenAI layer's (actors.openai_client): 401 / 403 / 404 →
ConfigError, 408 / 409 / 429 / 5xx, timeouts and dropped connections retried up to
`max_attempts`, then DependencyUnavailable. What is vision's own: the request (prompt, image,
JSON schema), and a reply that is not a valid PageAnalysis is retried once, then
DependencyUnavailable (a refusal at once: the same image would be refused again).

Messages never carry the key or the image. Every error names a `reason` in `details` for the
caller's fallback record.
"""

from __future__ import annotations

import asyncio
import base64
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from openai.types.chat import ChatCompletion
from pydantic import ValidationError

from actors.errors import InvalidInput
from actors.openai_client import OpenAIApi, RetryableReply, parse_retry_after
from actors.vision.page_analysis import (
    PAGE_ANALYSIS_SCHEMA,
    PROMPT_TOKENS,
    PROMPT_VERSION,
    SYSTEM_PROMPT,
    USER_PROMPT,
    PageAnalysis,
    VisionCall,
    estimate_image_tokens,
    image_token_rates,
)
from configs.vision import VisionSettings

# PageAnalysis, VisionCall and the estimates live in actors.vision.page_analysis (provider-
# neutral), parse_retry_after in the OpenAI layer; they are re-exported here because callers
# meet them through this provider.
__all__ = [
    "ACCEPTED_MEDIA_TYPES",
    "PAGE_ANALYSIS_SCHEMA",
    "PROMPT_VERSION",
    "OpenAIVision",
    "PageAnalysis",
    "VisionCall",
    "estimate_image_tokens",
    "image_token_rates",
    "parse_retry_after",
]

ACCEPTED_MEDIA_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})


class OpenAIVision:
    """Analyses one screenshot per call through `chat.completions.create`."""

    def __init__(
        self,
        settings: VisionSettings,
        http_client: Any = None,
        *,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
    ):
        self._settings = settings
        self._api = OpenAIApi(
            settings,
            http_client,
            name="vision provider",
            # A refusal will not heal soon: leave the provider alone as the breaker would.
            gave_up_retry_after_s=settings.breaker_cooldown_s,
            sleep=sleep,
            rng=rng,
        )
        self._max_tokens_field = self._api.max_tokens_field
        self._base_rate, self._tile_rate = image_token_rates(settings.model)

    @property
    def model(self) -> str:
        return self._settings.model

    def estimate_tokens(self, width: int, height: int) -> int:
        """Tokens one call may use (prompt, image, the whole output budget): for TPM pacing."""
        image = estimate_image_tokens(
            width,
            height,
            self._settings.image_detail,
            base=self._base_rate,
            per_tile=self._tile_rate,
        )
        return PROMPT_TOKENS + image + self._settings.max_output_tokens

    async def aclose(self) -> None:
        await self._api.aclose()

    async def analyze(self, image: bytes, media_type: str) -> VisionCall:
        """Analyse one screenshot; raise ConfigError or DependencyUnavailable if we cannot."""
        if media_type not in ACCEPTED_MEDIA_TYPES:
            raise InvalidInput(
                f"vision analysis accepts {sorted(ACCEPTED_MEDIA_TYPES)}, not {media_type[:40]!r}"
            )
        if not image:
            raise InvalidInput("vision analysis needs a non-empty image")
        request = self._request(image, media_type)
        started = time.monotonic()
        attempts = invalid_replies = 0

        async def attempt() -> VisionCall:
            nonlocal attempts, invalid_replies
            attempts += 1
            reply = await self._api.client.chat.completions.create(**request)
            try:
                return self._to_call(reply, attempts, time.monotonic() - started)
            except _InvalidReply as exc:
                invalid_replies += 1
                if invalid_replies > 1 or exc.final:
                    self._api.fail(
                        f"vision provider gave no usable analysis ({exc.reason})",
                        exc.reason,
                    )
                raise RetryableReply(exc.reason) from None

        return await self._api.call("screenshot analysis", attempt)

    @property
    def api(self) -> OpenAIApi:
        return self._api

    def request(self, image: bytes, media_type: str) -> dict[str, Any]:
        """The chat-completions body of one analysis (a Batch API line's body too)."""
        if media_type not in ACCEPTED_MEDIA_TYPES or not image:
            raise InvalidInput(f"vision analysis needs a non-empty image of {sorted(ACCEPTED_MEDIA_TYPES)}")
        return self._request(image, media_type)

    def from_batch(self, body: dict[str, Any], price_factor: float) -> VisionCall | None:
        """A Batch API answer as a VisionCall at `price_factor` of the price (None if unusable:
        the caller sends that frame the synchronous way)."""
        try:
            call = self._to_call(ChatCompletion.model_validate(body), 1, 0.0)
        except (_InvalidReply, ValidationError):
            return None
        return call.model_copy(update={"cost_usd": call.cost_usd * price_factor})

    def _request(self, image: bytes, media_type: str) -> dict[str, Any]:
        s = self._settings
        data_url = f"data:{media_type};base64,{base64.b64encode(image).decode('ascii')}"
        return {
            "model": s.model,
            "temperature": 0,
            self._max_tokens_field: s.max_output_tokens,
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": "page_analysis",
                    "strict": True,
                    "schema": PAGE_ANALYSIS_SCHEMA,
                },
            },
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": USER_PROMPT},
                        {
                            "type": "image_url",
                            "image_url": {"url": data_url, "detail": s.image_detail},
                        },
                    ],
                },
            ],
        }

    def _to_call(self, reply: Any, attempts: int, latency_s: float) -> VisionCall:
        choice = reply.choices[0] if reply.choices else None
        message = choice.message if choice is not None else None
        if message is None:
            raise _InvalidReply("no_choice")
        if getattr(message, "refusal", None):
            # Not worth a retry: the same image would be refused again.
            raise _InvalidReply("refused", final=True)
        try:
            analysis = PageAnalysis.model_validate_json(message.content or "")
        except ValidationError as exc:
            kind = (
                "not_json"
                if any(e["type"] == "json_invalid" for e in exc.errors())
                else "schema_mismatch"
            )
            raise _InvalidReply(kind) from None
        s = self._settings
        usage = reply.usage
        if usage is not None:
            tokens_in = max(0, int(usage.prompt_tokens or 0))
            tokens_out = max(0, int(usage.completion_tokens or 0))
        else:
            # Some compatible servers send no usage block: account a lower-bound estimate
            # (prompt plus the smallest image) rather than zero.
            tokens_in = PROMPT_TOKENS + self._base_rate
            tokens_out = len(message.content or "") // 4
        cost = (
            tokens_in * s.price_input_per_1m / 1e6
            + tokens_out * s.price_output_per_1m / 1e6
        )
        return VisionCall(
            analysis=analysis,
            model=getattr(reply, "model", None) or s.model,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost_usd=cost,
            attempts=attempts,
            latency_s=latency_s,
        )


class _InvalidReply(Exception):
    def __init__(self, reason: str, final: bool = False):
        super().__init__(reason, final)
        self.reason = reason
        self.final = final
