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
import json
import logging
import math
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, Literal, NoReturn

import openai
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from actors.errors import ConfigError, DependencyUnavailable, InvalidInput
from configs.vision import VisionSettings

__all__ = [
    "ACCEPTED_MEDIA_TYPES",
    "PAGE_ANALYSIS_SCHEMA",
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
# Bounds of one analysis: enough for labels, small enough to store per screenshot.
MAX_TEXT = 200
MAX_ITEMS = 12
MAX_ITEM_TEXT = 120


def _truncated(limit: int) -> BeforeValidator:
    # A verbose model is not a broken one: cut over-long text instead of rejecting it.
    return BeforeValidator(lambda v: v[:limit] if isinstance(v, str) else v)


def _first_items(v: Any) -> Any:
    if isinstance(v, list):
        return [s[:MAX_ITEM_TEXT] if isinstance(s, str) else s for s in v[:MAX_ITEMS]]
    return v


Text = Annotated[str, _truncated(MAX_TEXT), Field(min_length=1, max_length=MAX_TEXT)]
Items = Annotated[list[str], BeforeValidator(_first_items), Field(max_length=MAX_ITEMS)]
DecisionStage = Literal[
    "awareness", "consideration", "decision", "action", "post_action", "unknown"
]


class PageAnalysis(BaseModel):
    """What a vision model reads off one screenshot, as training-data labels."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    page_type: Text
    visible_state: Text
    intent_cues: Items
    decision_stage: DecisionStage
    notable_elements: Items
    confidence: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)


class VisionCall(BaseModel):
    """One successful analysis and what it cost."""

    model_config = ConfigDict(frozen=True)

    analysis: PageAnalysis
    model: str
    tokens_in: int = Field(ge=0)
    tokens_out: int = Field(ge=0)
    cost_usd: float = Field(ge=0)
    attempts: int = Field(ge=1)
    latency_s: float = Field(ge=0)


_STRING_LIST = {"type": "array", "items": {"type": "string"}}
# Hand-written rather than PageAnalysis.model_json_schema(): strict structured outputs accept
# only a subset of JSON Schema (every property required, no additional properties).
PAGE_ANALYSIS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "page_type": {
            "type": "string",
            "description": "e.g. search_results, product, cart",
        },
        "visible_state": {
            "type": "string",
            "description": "what the page shows right now",
        },
        "intent_cues": {
            **_STRING_LIST,
            "description": "hints of what the user is trying to do",
        },
        "decision_stage": {"type": "string", "enum": list(DecisionStage.__args__)},
        "notable_elements": {
            **_STRING_LIST,
            "description": "controls an agent would act on",
        },
        "confidence": {"type": "number", "description": "0 to 1"},
    },
    "required": [
        "page_type",
        "visible_state",
        "intent_cues",
        "decision_stage",
        "notable_elements",
        "confidence",
    ],
    "additionalProperties": False,
}

SYSTEM_PROMPT = (
    "You label screenshots of web pages for a pipeline that trains web-browsing agents. "
    "Describe only what is visible. page_type: a short snake_case kind of page. "
    "visible_state: one sentence on the page's current state (open dialogs, errors, filled "
    "forms, loading). intent_cues: up to 12 short phrases suggesting the user's goal. "
    "decision_stage: where the user is in their task. notable_elements: up to 12 controls or "
    "content an agent would act on, named by their visible label. confidence: 0 to 1. "
    "Never transcribe personal data (names, emails, addresses, card or account numbers)."
)
# Text tokens around the image: prompt, schema and chat framing, rounded up (~4 chars a token).
_PROMPT_TOKENS = (len(SYSTEM_PROMPT) + len(json.dumps(PAGE_ANALYSIS_SCHEMA))) // 4 + 64

# Image token rates (base, per 512px tile) where they differ from gpt-4o's 85 / 170:
# gpt-4o-mini bills images at ~33x the tokens so that they cost what they cost on gpt-4o.
_IMAGE_RATES: dict[str, tuple[int, int]] = {"gpt-4o-mini": (2833, 5667)}


def image_token_rates(model: str) -> tuple[int, int]:
    """(base tokens, tokens per tile) of `model`, by the longest matching name prefix."""
    matches = [name for name in _IMAGE_RATES if model.startswith(name)]
    return _IMAGE_RATES[max(matches, key=len)] if matches else (85, 170)


def estimate_image_tokens(
    width: int,
    height: int,
    detail: str = "high",
    *,
    base: int = 85,
    per_tile: int = 170,
) -> int:
    """Input tokens of one image by OpenAI's published rule for gpt-4o-class models.

    low: `base` whatever the size. high (and auto, which may pick high, so we reserve for
    it): scale to fit 2048x2048, then down so the shortest side is at most 768, then
    `base` + `per_tile` per 512px tile. Images are never scaled up.
    """
    if detail == "low":
        return base
    w, h = max(1, int(width)), max(1, int(height))
    scale = min(1.0, 2048 / max(w, h))
    w, h = w * scale, h * scale
    scale = min(1.0, 768 / min(w, h))
    w, h = w * scale, h * scale
    tiles = math.ceil(round(w, 6) / 512) * math.ceil(round(h, 6) / 512)
    return base + per_tile * tiles


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
        return _PROMPT_TOKENS + image + self._settings.max_output_tokens

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
        reason = "unknown"
        retry_after_s = s.backoff_base_s
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
            if attempt == s.max_attempts:
                break
            cap = min(s.backoff_max_s, s.backoff_base_s * 2 ** (attempt - 1))
            delay = server_wait if server_wait is not None else self._rng() * cap
            retry_after_s = max(delay, s.backoff_base_s)
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
            retry_after_s=retry_after_s,
        )

    def _check_status(self, exc: openai.APIStatusError, reason: str) -> float | None:
        """Raise unless the status is worth retrying; return the server's wait, if it named one."""
        status, code = exc.status_code, _short_code(exc)
        label = f"HTTP {status}" + (f" {code}" if code else "")
        if status in CONFIG_STATUSES:
            what = "model not found" if status == 404 else "credentials refused"
            raise ConfigError(
                f"vision provider: {what} ({label}); check vision.model, vision.api_key and vision.base_url",
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
                f"vision provider asked us to wait {wait:.0f}s ({label}), longer than backoff_max_s",
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
                        {"type": "text", "text": "Analyse this screenshot."},
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
            tokens_in, tokens_out = (
                int(usage.prompt_tokens),
                int(usage.completion_tokens),
            )
        else:
            # Some compatible servers send no usage block: account a lower-bound estimate
            # (prompt plus the smallest image) rather than zero.
            tokens_in = _PROMPT_TOKENS + self._base_rate
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
