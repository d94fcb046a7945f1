"""Typed settings of screenshot vision analysis: which provider, and how hard to lean on it.

"local" is the numpy analysis in actors.media.vision_local and needs nothing else. "openai"
speaks the OpenAI chat-completions API through `base_url`, so OpenAI itself, Azure OpenAI and
self-hosted compatible servers (vLLM, Ollama, LiteLLM) all work. The limits below exist so a
slow or failing provider degrades the pipeline to local analysis instead of stalling it.

The connection and retry fields are those of every OpenAI caller (configs.openai). The settings
owner maps the environment onto these fields (OPENAI_BASE_URL, OPENAI_API_KEY,
TRACEMILL_VISION_PROVIDER, TRACEMILL_VISION_MODEL); this module reads no environment itself.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from configs.openai import OpenAISettings

__all__ = ["VisionSettings"]


class VisionSettings(OpenAISettings):
    section: ClassVar[str] = "vision"

    provider: Literal["local", "openai"] = Field(
        "local",
        description="local needs no network or key, so it is the default; openai is opt-in",
    )
    model: str = Field(
        "gpt-4o-mini",
        description="cheapest OpenAI model that reads screenshots well enough for labels",
    )
    # base_url, api_key, max_attempts (4: beyond a few, local analysis is the better answer)
    # and backoff_base_s come from OpenAISettings.
    timeout_s: float = Field(
        30.0,
        gt=0,
        le=600,
        description="deadline of one attempt: a stuck call must not hold a concurrency slot",
    )
    backoff_max_s: float = Field(
        20.0,
        gt=0,
        le=600,
        description="cap on any wait between attempts; a longer Retry-After makes us give "
        "up at once rather than sleep",
    )
    requests_per_minute: int = Field(
        500, ge=1, description="stay under the account's RPM so we pace, not get 429s"
    )
    tokens_per_minute: int = Field(
        200_000,
        ge=1,
        description="stay under the account's TPM (images count as tokens)",
    )
    breaker_failures: int = Field(
        5,
        ge=1,
        le=1000,
        description="consecutive failures before we stop calling a provider that is down",
    )
    breaker_cooldown_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="how long to leave a failing provider alone before one probe call",
    )
    price_input_per_1m: float = Field(
        0.15,
        ge=0,
        description="USD per million input tokens, to account spend per call",
    )
    price_output_per_1m: float = Field(
        0.60,
        ge=0,
        description="USD per million output tokens, to account spend per call",
    )
    max_output_tokens: int = Field(
        400,
        ge=16,
        le=16_384,
        description="bounds cost and latency; the JSON answer needs ~150 tokens",
    )
    image_detail: Literal["low", "high", "auto"] = Field(
        "low",
        description="low is a flat, cheap budget per image and enough for page-level labels",
    )
    max_concurrency: int = Field(
        8,
        ge=1,
        le=256,
        description="calls in flight per service; bounds memory and sockets",
    )

    @model_validator(mode="after")
    def _check_model(self) -> VisionSettings:
        if self.provider == "openai" and not self.model.strip():
            raise ValueError("vision.model is required when provider is 'openai'")
        return self
