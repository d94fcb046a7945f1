"""Screenshot analysis by an OpenAI-compatible chat-completions API, with our own retries.

The openai client is built with `max_retries=0`: retries, backoff and Retry-After handling
live here, where they are bounded by our settings and testable against a real HTTP server.

Errors map onto the one exception tree (actors.errors):

- 401 / 403 / 404 → ConfigError: a wrong key, a key without access or a model name the host
  does not know will not heal by retrying; someone has to fix the settings.
- 408 / 409 / 429 / 5xx, timeouts, connection errors → retried up to `max_attempts`, then
  DependencyUnavailable. A Retry-After longer than `backoff_max_s` gives up at once with
  DependencyUnavailable(retry_after_s=that value): sleeping minutes would hold a slot.
- 429 with code `insufficient_quota`, and other 4xx → DependencyUnavailable, not retried.
- A reply that is not a valid PageAnalysis → retried once, then DependencyUnavailable.

Messages carry only our own words, status codes and the provider's short error `code`, never
the provider's free text (OpenAI echoes part of a wrong key back), the key or the image.
Every error names a `reason` in `details` for the caller's fallback record.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import logging
import math
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NoReturn

import openai
from pydantic import ValidationError

from actors.errors import ConfigError, DependencyUnavailable, InvalidInput
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
# neutral); they are re-exported here because callers meet them through this provider.
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

log = logging.getLogger(__name__)

ACCEPTED_MEDIA_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})
RETRYABLE_STATUSES = frozenset({408, 409, 429})
CONFIG_STATUSES = frozenset({401, 403, 404})


def parse_retry_after(
    headers: Mapping[str, str], now: Callable[[], float] = time.time
) -> float | None:
    """Seconds the server asked us to wait: retry-after-ms, Retry-After seconds or HTTP date."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000
            if math.isfinite(value):
                return max(0.0, value)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        value = float(raw)
        return max(0.0, value) if math.isfinite(value) else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - now())


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
        self._sleep = sleep
        self._rng = rng
        self._secret = settings.api_key.get_secret_value() if settings.api_key else None
        self._client = self._build_client(http_client)
        host = self._client.base_url.host
        # OpenAI deprecated max_tokens (reasoning models reject it); compatible servers
        # (vLLM, Ollama, LiteLLM) have accepted max_tokens far longer than the new name.
        official = host == "api.openai.com" or host.endswith(".openai.azure.com")
        self._max_tokens_field = "max_completion_tokens" if official else "max_tokens"
        self._base_rate, self._tile_rate = image_token_rates(settings.model)

    def _build_client(self, http_client: Any) -> openai.AsyncOpenAI:
        s = self._settings
        kwargs: dict[str, Any] = {
            "timeout": s.timeout_s,
            "max_retries": 0,
            "http_client": http_client,
        }
        try:
            # None lets the client read OPENAI_API_KEY / OPENAI_BASE_URL itself.
            return openai.AsyncOpenAI(
                api_key=self._secret, base_url=s.base_url, **kwargs
            )
        except openai.OpenAIError as exc:
            missing_key = self._secret is None and "credential" in str(exc).lower()
            if not missing_key:
                raise ConfigError(
                    f"cannot configure the openai vision client ({type(exc).__name__})"
                ) from None
        if s.base_url:
            # An explicitly configured compatible server (vLLM, Ollama) usually wants no key;
            # the client insists on one, so send a placeholder.
            return openai.AsyncOpenAI(api_key="unset", base_url=s.base_url, **kwargs)
        raise ConfigError(
            "no API key for the openai vision provider: set vision.api_key or OPENAI_API_KEY "
            "(or vision.base_url for a compatible server that needs no key)"
        )

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
        await self._client.close()

    async def analyze(self, image: bytes, media_type: str) -> VisionCall:
        """Analyse one screenshot; raise ConfigError or DependencyUnavailable if we cannot."""
        if media_type not in ACCEPTED_MEDIA_TYPES:
            raise InvalidInput(
                f"vision analysis accepts {sorted(ACCEPTED_MEDIA_TYPES)}, not {media_type[:40]!r}"
            )
        if not image:
            raise InvalidInput("vision analysis needs a non-empty image")
        s = self._settings
        request = self._request(image, media_type)
        started = time.monotonic()
        invalid_replies = 0
        reason, hint = "unknown", s.backoff_base_s
        for attempt in range(1, s.max_attempts + 1):
            server_wait: float | None = None
            try:
                async with asyncio.timeout(s.timeout_s):
                    reply = await self._client.chat.completions.create(**request)
            except (TimeoutError, openai.APITimeoutError):
                reason = "timeout"
            except openai.APIConnectionError:
                reason = "connection_error"
            except openai.APIStatusError as exc:
                reason = f"http_{exc.status_code}"
                server_wait = self._check_status(exc, reason)
            except openai.OpenAIError as exc:
                self._fail(
                    f"vision call failed ({type(exc).__name__})",
                    type(exc).__name__,
                    retry=False,
                )
            else:
                try:
                    return self._to_call(reply, attempt, time.monotonic() - started)
                except _InvalidReply as exc:
                    reason = exc.reason
                    invalid_replies += 1
                    if invalid_replies > 1 or exc.final:
                        self._fail(
                            f"vision provider gave no usable analysis ({reason})",
                            reason,
                        )
            # Exponential backoff with full jitter, unless the server said how long.
            cap = min(s.backoff_max_s, s.backoff_base_s * 2 ** (attempt - 1))
            hint = server_wait if server_wait is not None else cap
            if attempt == s.max_attempts:
                break
            delay = server_wait if server_wait is not None else self._rng() * cap
            log.warning(
                "vision call attempt %d/%d failed (%s); retrying in %.2fs",
                attempt,
                s.max_attempts,
                reason,
                delay,
            )
            await self._sleep(delay)
        self._fail(
            f"vision provider unavailable after {s.max_attempts} attempt(s) ({reason})",
            reason,
            retry_after_s=hint,
        )

    def _check_status(self, exc: openai.APIStatusError, reason: str) -> float | None:
        """Raise unless the status is worth retrying; return the server's wait, if it named one."""
        status, code = exc.status_code, _short_code(exc)
        label = f"HTTP {status}" + (f" {code}" if code else "")
        if status in CONFIG_STATUSES:
            what = "model not found" if status == 404 else "credentials refused"
            raise ConfigError(
                f"vision provider: {what} ({label}); check vision.model, "
                "vision.api_key and vision.base_url",
                details=[{"provider": "openai", "reason": reason}],
            ) from None
        if code == "insufficient_quota" or not (
            status in RETRYABLE_STATUSES or status >= 500
        ):
            self._fail(
                f"vision provider rejected the request ({label})", reason, retry=False
            )
        wait = parse_retry_after(exc.response.headers)
        if wait is not None and wait > self._settings.backoff_max_s:
            self._fail(
                f"vision provider asked us to wait {wait:.0f}s ({label}), "
                "longer than backoff_max_s",
                reason,
                retry_after_s=wait,
            )
        return wait

    def _fail(
        self,
        message: str,
        reason: str,
        *,
        retry: bool = True,
        retry_after_s: float | None = None,
    ) -> NoReturn:
        if retry_after_s is None:
            retry_after_s = (
                self._settings.backoff_base_s
                if retry
                else self._settings.breaker_cooldown_s
            )
        details = [{"provider": "openai", "reason": reason}]
        raise DependencyUnavailable(
            self._scrub(message), retry_after_s=retry_after_s, details=details
        ) from None

    def _scrub(self, text: str) -> str:
        # Last line of defence: our messages never include the key, but make sure of it.
        return text.replace(self._secret, "***") if self._secret else text

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


_CODE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


def _short_code(exc: openai.APIStatusError) -> str:
    """The provider's machine-readable error code, if it is one (never its free text)."""
    code = exc.code
    if code is None and isinstance(exc.body, dict):
        inner = exc.body.get("error")
        code = inner.get("code") if isinstance(inner, dict) else None
    return code if isinstance(code, str) and _CODE.match(code) else ""
