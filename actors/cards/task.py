"""The cards stage's Ray task, a thin shell like the other finalisation tasks
(actors.processing.tasks: resources, logging, retries on DependencyUnavailable)."""

from __future__ import annotations

import uuid
from typing import Any

from actors.cards.step import make_card
from actors.processing.tasks import run_step, step_task
from configs.settings import TracemillSettings

__all__ = ["cards_task"]


@step_task(num_cpus=0.25)
def cards_task(settings: TracemillSettings, session_id: uuid.UUID, request_id: str | None = None) -> dict[str, Any]:
    return run_step("cards", settings, request_id, lambda res: make_card(res, session_id))
