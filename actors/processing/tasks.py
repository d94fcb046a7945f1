"""The Ray remote tasks a shard fans out. Each is a thin shell: open the task's resources,
run one idempotent step, close them. Settings arrive as an argument (DESIGN.md decision 10).

Retries: a worker that dies is retried by Ray (`max_retries`); a transient dependency fault
(DependencyUnavailable: the database or the object store briefly gone) is retried too, as
every step can simply run again. Anything else reaches the finalizer, which counts it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import ray

from actors import telemetry
from actors.errors import DependencyUnavailable
from actors.logs import bound_request, setup_logging
from actors.processing.analysis_step import analyze_session
from actors.processing.archive import archive_session
from actors.processing.task_resources import TaskResources, task_resources
from actors.processing.screenshots import compress_stored_screenshot
from actors.processing.vision_step import analyze_frames
from configs.settings import TracemillSettings

__all__ = ["STEP_RETRY", "analysis_task", "archive_task", "compress_task", "run_step", "step_task",
           "vision_task"]

T = TypeVar("T")
log = logging.getLogger(__name__)
# Every finalisation step can simply run again, so a dead worker or a dependency briefly gone
# is retried; anything else reaches the finalizer, which counts it.
STEP_RETRY: dict[str, Any] = {"max_retries": 3, "retry_exceptions": [DependencyUnavailable]}


def step_task(num_cpus: float) -> Any:
    """The Ray remote decorator of a finalisation step's task (its CPU share and STEP_RETRY)."""
    return ray.remote(num_cpus=num_cpus, **STEP_RETRY)


def run_step(kind: str, settings: TracemillSettings, request_id: str | None,
             step: Callable[[TaskResources], Awaitable[T]]) -> T:
    """A step task's body: open its resources, run `step` under the request id, time and log it."""
    setup_logging("task", settings.log_level)

    async def main() -> T:
        async with task_resources(settings) as res:
            return await step(res)

    with bound_request(request_id), telemetry.time_task(kind):
        result = asyncio.run(main())
        log.info("%s task done: %s", kind, _summary(result))
        return result


def _summary(result: Any) -> str:
    # Ids, statuses and sizes only: a task's result never holds event values.
    if not isinstance(result, dict):
        return type(result).__name__
    return ", ".join(f"{k}={v}" for k, v in result.items() if isinstance(v, (int, float, str)) and k != "key")


@step_task(num_cpus=1)
def compress_task(settings: TracemillSettings, session_id: uuid.UUID, screenshot_id: str,
                  request_id: str | None = None) -> dict[str, Any]:
    return run_step("compress", settings, request_id, lambda res: compress_stored_screenshot(res, session_id, screenshot_id))


@step_task(num_cpus=0.25)
def vision_task(settings: TracemillSettings, session_id: uuid.UUID, request_id: str | None = None) -> dict[str, Any]:
    return run_step("vision", settings, request_id, lambda res: analyze_frames(res, session_id))


@step_task(num_cpus=0.25)
def analysis_task(settings: TracemillSettings, session_id: uuid.UUID, request_id: str | None = None) -> dict[str, Any]:
    return run_step("score", settings, request_id, lambda res: analyze_session(res, session_id))


@step_task(num_cpus=0.25)
def archive_task(settings: TracemillSettings, session_id: uuid.UUID, request_id: str | None = None) -> dict[str, Any]:
    return run_step("archive", settings, request_id, lambda res: archive_session(res, session_id))
