"""What every caller of an OpenAI-compatible API is configured by: where, which key, how long.

Vision (configs.vision), fine-tuning (configs.finetune) and evaluation (configs.evaluation)
derive their settings from `OpenAISettings`, so the one OpenAI layer (actors.openai_client)
takes any of them. Each keeps its own YAML section and field names; a subclass redeclares a
field only where its budget differs (an upload needs a longer deadline than a chat call).

With `base_url` and `api_key` left None the openai client reads OPENAI_BASE_URL and
OPENAI_API_KEY itself; `openai_from_env` is the one place the settings owner maps them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

__all__ = ["OPENAI_ENV", "OpenAISettings", "openai_from_env"]

# The openai client's own variables, honoured by every OpenAI caller.
OPENAI_ENV = {"OPENAI_BASE_URL": "base_url", "OPENAI_API_KEY": "api_key"}


class OpenAISettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # The YAML section a subclass is read from: error messages name its fields (vision.api_key).
    section: ClassVar[str] = "openai"

    base_url: str | None = Field(
        None,
        description="None lets the openai client use OPENAI_BASE_URL or api.openai.com; "
        "set it for Azure or a self-hosted compatible server",
    )
    api_key: SecretStr | None = Field(
        None,
        description="None lets the openai client read OPENAI_API_KEY; SecretStr keeps it "
        "out of reprs and logs",
    )
    timeout_s: float = Field(
        60.0,
        gt=0,
        le=600,
        description="deadline of one HTTP attempt: a stuck call must not hold a slot",
    )
    max_attempts: int = Field(
        4,
        ge=1,
        le=10,
        description="attempts per call on 408/409/429/5xx, timeouts and dropped "
        "connections, counting the first",
    )
    backoff_base_s: float = Field(
        0.5, ge=0, le=60, description="first retry waits up to this (full jitter)"
    )
    backoff_max_s: float = Field(
        60.0,
        gt=0,
        le=600,
        description="cap on any wait between attempts; a longer Retry-After makes us give "
        "up at once rather than sleep",
    )

    @model_validator(mode="after")
    def _check_backoff(self) -> Self:
        if self.backoff_base_s > self.backoff_max_s:
            raise ValueError(
                f"{self.section}.backoff_base_s ({self.backoff_base_s}) must not exceed "
                f"{self.section}.backoff_max_s ({self.backoff_max_s})"
            )
        return self


def openai_from_env(env: Mapping[str, str]) -> dict[str, str]:
    """The settings fields that the standard OpenAI variables set (those that are non-empty)."""
    return {field: env[name] for name, field in OPENAI_ENV.items() if env.get(name)}
