"""The cards stage's Ray task, a thin shell like the other finalisation tasks
(actors.processing.tasks: resources, logging, retries on DependencyUnavailable)."""

from __future__ import annotations

import uuid
from typing import Any

import ray

from actors.cards.step import make_card
from actors.processing.tasks import _RETRY, _run
from configs.settings import TracemillSettings

__all__ = ["cards_task"]


@ray.remote(num_cpus=0.25, **_RETRY)
def cards_task(settings: TracemillSettings, session_id: uuid.UUID, request_id: str | None = None) -> dict[str, Any]:
    return _run("cards", settings, request_id, lambda res: make_card(res, session_id))
