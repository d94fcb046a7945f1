"""Fine-tuning behind a provider interface (DESIGN.md decision 7): "openai" (an
OpenAI-compatible API) or "local" (the element ranker on this cluster with Ray Train)."""

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
from configs.settings import ObjectStoreSettings


def make_provider(settings: FineTuneSettings, object_store: ObjectStoreSettings | None = None) -> FineTuneProvider:
    """The provider the settings name; "local" keeps its files and checkpoints in `object_store`."""
    if settings.provider == "local":
        from actors.training.finetune.local_provider import LocalFineTuneProvider  # Ray Train only when used

        if object_store is None:
            raise ValueError("the local provider needs the object store settings")
        return LocalFineTuneProvider(settings, object_store)
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
