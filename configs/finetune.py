"""Typed settings of the fine-tune step: which provider, what to train, how to poll and retry.

Only "openai" exists today; it speaks the OpenAI fine-tuning API through `base_url`, so
Azure OpenAI and compatible hosts work (DESIGN.md decision 7). A "local" provider is planned.
Hyperparameters left as None are not sent, so the provider picks them ("auto" is sent as is).

The connection and retry fields are those of every OpenAI caller (configs.openai). The settings
owner maps the environment onto them (OPENAI_BASE_URL, OPENAI_API_KEY); with both None the
openai client reads them itself. This module reads no environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from configs.base import load_yaml, validated
from configs.openai import OpenAISettings

__all__ = ["FineTuneSettings"]

MiB = 1024 * 1024


class FineTuneSettings(OpenAISettings):
    section: ClassVar[str] = "finetune"

    provider: Literal["openai"] = Field(
        "openai",
        description="the only provider so far; a Ray Train 'local' one is planned",
    )
    # base_url and api_key come from OpenAISettings, as do the retry fields redeclared
    # below with the budget of uploads and of a job that runs for hours.
    model: str = Field(
        "gpt-4o-mini-2024-07-18",
        min_length=1,
        description="base model snapshot to fine-tune (a dated snapshot, as OpenAI requires)",
    )
    n_epochs: int | Literal["auto"] | None = Field(None, description="None: not sent")
    batch_size: int | Literal["auto"] | None = Field(None, description="None: not sent")
    learning_rate_multiplier: float | Literal["auto"] | None = Field(
        None, description="None: not sent"
    )
    suffix: str | None = Field(
        None,
        max_length=64,
        pattern=r"^[a-z0-9-]+$",
        description="part of the fine-tuned model's name: ft:<model>:<org>:<suffix>:<id>",
    )
    seed: int | None = Field(
        None, ge=0, description="for a reproducible job; None: random"
    )
    timeout_s: float = Field(
        120.0,
        gt=0,
        le=3600,
        description="deadline of one HTTP attempt (uploads are big)",
    )
    max_attempts: int = Field(
        5, ge=1, le=20, description="attempts per API call, counting the first"
    )
    backoff_base_s: float = Field(
        1.0, ge=0, le=60, description="first retry waits up to this (full jitter)"
    )
    backoff_max_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="cap on any wait between attempts; a longer Retry-After gives up at once",
    )
    poll_interval_s: float = Field(
        30.0,
        gt=0,
        description="first wait between two status polls, and after any change",
    )
    poll_max_s: float = Field(
        300.0,
        gt=0,
        description="cap on the wait between polls: the interval doubles while nothing "
        "changes, up to this",
    )
    idempotent_create: bool = Field(
        True,
        description="tag each job with a request key in its metadata and, before retrying "
        "a failed create, look the key up, so a lost reply never starts a second job; "
        "turn off only for a host without job metadata",
    )
    job_attempts: int = Field(
        2, ge=1, le=10,
        description="provider jobs started for one fine-tune: a job that fails with a "
        "retryable error code is started again, up to this many jobs in all",
    )
    retry_error_codes: tuple[str, ...] = Field(
        ("server_error", "internal_error", "api_error", "timeout"),
        description="error codes of a failed provider job worth a new job; data errors "
        "(invalid_training_file, …) are not: a rerun would fail the same way and bill again",
    )
    upload_part_bytes: int = Field(
        64 * MiB,
        ge=1,
        le=64 * MiB,
        description="files above this go through the Uploads API in parts of this size "
        "(OpenAI caps a part at 64 MiB)",
    )

    @model_validator(mode="after")
    def _check(self) -> FineTuneSettings:
        for name in ("n_epochs", "batch_size", "learning_rate_multiplier"):
            value = getattr(self, name)
            if value is not None and value != "auto" and value <= 0:
                raise ValueError(
                    f"finetune.{name} must be positive or 'auto', not {value}"
                )
        if self.poll_interval_s > self.poll_max_s:
            raise ValueError(
                f"finetune.poll_interval_s ({self.poll_interval_s}) must not exceed "
                f"finetune.poll_max_s ({self.poll_max_s})"
            )
        return self

    @classmethod
    def from_file(cls, path: Path) -> FineTuneSettings:
        """A YAML config (a `finetune:` mapping, or the fields at the top level)."""
        data = load_yaml(path)
        data = data.get("finetune", data) if isinstance(data.get("finetune"), dict) else data
        return validated(cls, data, f"invalid {path}")

    def hyperparameters(self) -> dict[str, int | float | str]:
        """The hyperparameters to send: only those that are set."""
        values = {
            "n_epochs": self.n_epochs,
            "batch_size": self.batch_size,
            "learning_rate_multiplier": self.learning_rate_multiplier,
        }
        return {k: v for k, v in values.items() if v is not None}
