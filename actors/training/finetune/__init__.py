"""Fine-tuning behind a provider interface (DESIGN.md decision 7)."""

from actors.training.finetune.openai_provider import OpenAIFineTuneProvider, wait_for_job
from actors.training.finetune.provider import (
    TERMINAL_STATUSES,
    Checkpoint,
    FineTuneProvider,
    JobEvent,
    JobState,
    JobStatus,
)

from configs.finetune import FineTuneSettings


def make_provider(settings: FineTuneSettings) -> FineTuneProvider:
    """The provider the settings name (only "openai" so far; see DESIGN.md decision 7)."""
    return OpenAIFineTuneProvider(settings)


__all__ = [
    "TERMINAL_STATUSES",
    "Checkpoint",
    "FineTuneProvider",
    "JobEvent",
    "JobState",
    "JobStatus",
    "OpenAIFineTuneProvider",
    "make_provider",
    "wait_for_job",
]
