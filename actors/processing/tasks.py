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

__all__ = ["analysis_task", "archive_task", "compress_task", "vision_task"]

T = TypeVar("T")
log = logging.getLogger(__name__)
_RETRY = {"max_retries": 3, "retry_exceptions": [DependencyUnavailable]}


def _run(kind: str, settings: TracemillSettings, request_id: str | None,
         step: Callable[[TaskResources], Awaitable[T]]) -> T:
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


@ray.remote(num_cpus=1, **_RETRY)
def compress_task(settings: TracemillSettings, session_id: uuid.UUID, screenshot_id: str,
                  request_id: str | None = None) -> dict[str, Any]:
    return _run("compress", settings, request_id, lambda res: compress_stored_screenshot(res, session_id, screenshot_id))


@ray.remote(num_cpus=0.25, **_RETRY)
def vision_task(settings: TracemillSettings, session_id: uuid.UUID, request_id: str | None = None) -> dict[str, Any]:
    return _run("vision", settings, request_id, lambda res: analyze_frames(res, session_id))


@ray.remote(num_cpus=0.25, **_RETRY)
def analysis_task(settings: TracemillSettings, session_id: uuid.UUID, request_id: str | None = None) -> dict[str, Any]:
    return _run("score", settings, request_id, lambda res: analyze_session(res, session_id))


@ray.remote(num_cpus=0.25, **_RETRY)
def archive_task(settings: TracemillSettings, session_id: uuid.UUID, request_id: str | None = None) -> dict[str, Any]:
    return _run("archive", settings, request_id, lambda res: archive_session(res, session_id))
