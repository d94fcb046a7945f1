"""The provider interface of fine-tuning, and the provider-neutral records it returns.

A provider uploads training files, starts a supervised fine-tune, reports its status, events
and checkpoints, and cancels it. Everything above it (the job driver, the registry, the API)
speaks only these types, so a second provider (Ray Train on open models) can slot in.
"""

from __future__ import annotations

import abc
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from configs.finetune import FineTuneSettings

__all__ = [
    "TERMINAL_STATUSES",
    "Checkpoint",
    "FineTuneProvider",
    "JobEvent",
    "JobState",
    "JobStatus",
]

JobState = Literal[
    "queued", "validating_files", "running", "succeeded", "failed", "cancelled"
]
TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class JobStatus(_Record):
    id: str
    status: JobState
    model: str | None = None
    fine_tuned_model: str | None = None
    trained_tokens: int | None = None
    error: str | None = Field(
        None, description="the provider's error message, if it failed"
    )
    error_code: str | None = Field(
        None, description="the provider's error code, if it failed (decides a retry)"
    )
    created_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class JobEvent(_Record):
    id: str
    created_at: datetime | None = None
    level: str = "info"
    message: str = ""
    type: str | None = None
    data: dict[str, Any] | None = None


class Checkpoint(_Record):
    id: str | None = None
    step: int
    metrics: dict[str, float] = Field(default_factory=dict)
    fine_tuned_model_checkpoint: str | None = None
    created_at: datetime | None = None


class FineTuneProvider(abc.ABC):
    """One fine-tuning backend. Errors come from actors.errors: ConfigError for settings
    that cannot work, NotFound for unknown ids, InvalidInput for a request the provider
    rejects, DependencyUnavailable once retries of transient failures are spent."""

    # The dataset files (training, validation) the driver uploads: the chat JSONL by default,
    # the ranking rows for the local ranker.
    dataset_files: tuple[str, str] = ("train.jsonl", "validation.jsonl")

    @abc.abstractmethod
    async def upload(self, path: Path) -> str:
        """Upload a JSONL training or validation file; return the provider's file id."""

    @abc.abstractmethod
    async def create_job(
        self,
        training_file: str,
        validation_file: str | None,
        settings: FineTuneSettings,
        request_key: str | None = None,
    ) -> JobStatus:
        """Start a supervised fine-tune of settings.model with its hyperparameters.

        With `request_key`, a job already started under that key is returned instead of a
        second one being started: a resumed driver passes the key its dead predecessor used."""

    @abc.abstractmethod
    async def get_job(self, job_id: str) -> JobStatus: ...

    @abc.abstractmethod
    async def list_events(
        self, job_id: str, after: str | None = None
    ) -> list[JobEvent]:
        """Events of the job, oldest first; `after` is the provider's cursor (an event id)."""

    @abc.abstractmethod
    async def list_checkpoints(self, job_id: str) -> list[Checkpoint]:
        """Checkpoints of the job with their metrics, by ascending step."""

    @abc.abstractmethod
    async def cancel(self, job_id: str) -> JobStatus: ...

    async def aclose(self) -> None:
        """Release connections; a provider without any need not override it."""
