"""Fine-tuning behind a provider interface (DESIGN.md decision 7)."""

from actors.finetune.openai_provider import OpenAIFineTuneProvider, wait_for_job
from actors.finetune.provider import (
    TERMINAL_STATUSES,
    Checkpoint,
    FineTuneProvider,
    JobEvent,
    JobState,
    JobStatus,
)

__all__ = [
    "TERMINAL_STATUSES",
    "Checkpoint",
    "FineTuneProvider",
    "JobEvent",
    "JobState",
    "JobStatus",
    "OpenAIFineTuneProvider",
    "wait_for_job",
]
