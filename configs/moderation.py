"""Typed settings of training-data moderation (issue 19.3): who scores the text, which model.

"local" scores with the offline word-list classifier (actors.moderation.wordlist) and needs no
network or key; "openai" calls the OpenAI-compatible moderation endpoint through the one OpenAI
layer (actors.openai_client) and falls back to local scoring when the call fails, so a dataset
build never waits on, or is stopped by, the provider. Thresholds are per workspace in the
database (admins set them through /v1/moderation/thresholds); these are the defaults.
"""

from __future__ import annotations

from typing import ClassVar, Literal, Self

from pydantic import Field, model_validator

from configs.openai import OpenAISettings

__all__ = ["ModerationSettings"]


class ModerationSettings(OpenAISettings):
    section: ClassVar[str] = "moderation"

    enabled: bool = Field(True, description="score the text of every step a dataset would use")
    provider: Literal["local", "openai"] = Field(
        "local", description="local works offline; openai is opt-in (falls back to local on failure)")
    model: str = Field("omni-moderation-latest", description="OpenAI's current moderation model")
    inputs_per_call: int = Field(
        32, ge=1, le=256, description="texts sent in one moderation request (OpenAI takes an array)")
    max_chars: int = Field(
        4000, ge=100, le=100_000, description="text of one step cut to this many characters before scoring")
    timeout_s: float = Field(20.0, gt=0, le=600, description="one moderation request")
    max_attempts: int = Field(2, ge=1, le=10, description="then the local fallback answers")
    default_warn: float = Field(0.6, ge=0, le=1, description="a workspace without its own thresholds")
    default_block: float = Field(0.8, ge=0, le=1, description="a workspace without its own thresholds")

    @model_validator(mode="after")
    def _check_thresholds(self) -> Self:
        if self.default_warn > self.default_block:
            raise ValueError("moderation.default_warn must not exceed moderation.default_block")
        return self
