"""The `openai` fine-tune provider: the OpenAI fine-tuning API through the `openai` client.

Client setup, retries (Retry-After, jittered backoff, bounded by FineTuneSettings), the
status → error mapping and the scrubbing of secrets are the one OpenAI layer's
(actors.openai_client). What fine-tuning maps its own way:

- 401 / 403 → ConfigError (a wrong key or a key without fine-tuning access);
  404 → ConfigError when creating a job (unknown base model or file), NotFound otherwise.
- 400 / 422 → InvalidInput (the provider rejected a file or a hyperparameter), not retried.

Job error messages from the provider (why a fine-tune failed) are data, returned in
JobStatus.error.

Creating a job is made idempotent (settings.idempotent_create): the job carries a request
key in its metadata, and a retried create first lists jobs by that key, so a reply lost to a
timeout or a 5xx never starts a second, billed job.

Files up to `upload_part_bytes` go through `files.create`; larger ones through the Uploads
API (create, one part per `upload_part_bytes`, complete with the parts' order and md5).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from actors.errors import (
    ConfigError,
    DependencyUnavailable,
    InvalidInput,
    NotFound,
    TracemillError,
)
from actors.openai_client import OpenAIApi
from actors.training.finetune.provider import (
    Checkpoint,
    FineTuneProvider,
    JobEvent,
    JobStatus,
)
from configs.finetune import FineTuneSettings

__all__ = ["OpenAIFineTuneProvider", "wait_for_job"]

log = logging.getLogger(__name__)

T = TypeVar("T")
# Statuses that no retry heals, and what they say about the settings or the request.
ERRORS: Mapping[int, type[TracemillError]] = {
    401: ConfigError,
    403: ConfigError,
    404: NotFound,
    400: InvalidInput,
    422: InvalidInput,
}
# Creating a job names the base model and the files: one unknown is a settings problem.
CREATE_ERRORS: Mapping[int, type[TracemillError]] = {**ERRORS, 404: ConfigError}
JSONL_MIME = "application/jsonl"
REQUEST_KEY = "tracemill_request"  # job metadata key making create idempotent
_STATUS_ALIASES = {"canceled": "cancelled", "pending": "queued"}

OnUpdate = Callable[[JobStatus, list[JobEvent]], Awaitable[object] | object]


class OpenAIFineTuneProvider(FineTuneProvider):
    def __init__(
        self,
        settings: FineTuneSettings,
        http_client: Any = None,
        *,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
    ):
        self._settings = settings
        self._api = OpenAIApi(
            settings,
            http_client,
            name="fine-tune provider",
            # Fine-tuning hosts always want a key: refuse before anything is uploaded.
            require_key=True,
            gave_up_retry_after_s=settings.poll_interval_s,
            sleep=sleep,
            rng=rng,
        )
        self._client = self._api.client

    async def aclose(self) -> None:
        await self._api.aclose()

    # -- files ---------------------------------------------------------------------------

    async def upload(self, path: Path) -> str:
        path = Path(path)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise InvalidInput(
                f"cannot read training file {path.name!r} ({exc.strerror})"
            ) from None
        if size == 0:
            raise InvalidInput(f"training file {path.name!r} is empty")
        if size <= self._settings.upload_part_bytes:
            data = path.read_bytes()
            created = await self._call(
                "upload file",
                lambda: self._client.files.create(
                    file=(path.name, data, JSONL_MIME), purpose="fine-tune"
                ),
            )
            return created.id
        return await self._upload_in_parts(path, size)

    async def _upload_in_parts(self, path: Path, size: int) -> str:
        upload = await self._call(
            "create upload",
            lambda: self._client.uploads.create(
                bytes=size,
                filename=path.name,
                mime_type=JSONL_MIME,
                purpose="fine-tune",
            ),
        )
        md5 = hashlib.md5(usedforsecurity=False)
        part_ids: list[str] = []
        with path.open("rb") as handle:
            while chunk := handle.read(self._settings.upload_part_bytes):
                md5.update(chunk)
                part = await self._call(
                    f"upload part {len(part_ids) + 1}",
                    lambda chunk=chunk: self._client.uploads.parts.create(
                        upload.id, data=chunk
                    ),
                )
                part_ids.append(part.id)
        done = await self._call(
            "complete upload",
            lambda: self._client.uploads.complete(
                upload.id, part_ids=part_ids, md5=md5.hexdigest()
            ),
        )
        file = getattr(done, "file", None)
        if file is None or not getattr(file, "id", None):
            self._api.fail(
                "fine-tune provider completed the upload without a file",
                "no_file",
                retry=False,
            )
        log.info(
            "uploaded %s (%d bytes) in %d parts as %s",
            path.name,
            size,
            len(part_ids),
            file.id,
        )
        return file.id

    # -- jobs ----------------------------------------------------------------------------

    async def create_job(
        self,
        training_file: str,
        validation_file: str | None,
        settings: FineTuneSettings,
        request_key: str | None = None,
    ) -> JobStatus:
        request: dict[str, Any] = {
            "model": settings.model,
            "training_file": training_file,
            "method": {
                "type": "supervised",
                "supervised": {"hyperparameters": settings.hyperparameters()},
            },
        }
        if validation_file:
            request["validation_file"] = validation_file
        if settings.suffix:
            request["suffix"] = settings.suffix
        if settings.seed is not None:
            request["seed"] = settings.seed
        if not settings.idempotent_create:
            job = await self._call(
                "create fine-tuning job",
                lambda: self._client.fine_tuning.jobs.create(**request),
                not_found_is_config=True,
            )
            return _job_status(job)
        # A create whose reply is lost (timeout, 5xx after the fact) may have started a
        # job: before any retry, look for the job carrying this request's key.
        key = {REQUEST_KEY: request_key or uuid.uuid4().hex}
        request["metadata"] = key
        # A caller's key may have been used by a driver that died: look before the first try.
        tries = 1 if request_key else 0

        async def create_once() -> Any:
            nonlocal tries
            tries += 1
            if tries > 1:
                page = await self._client.fine_tuning.jobs.list(metadata=key, limit=1)
                if page.data:
                    log.info("fine-tune create: found the job of a lost reply")
                    return page.data[0]
            return await self._client.fine_tuning.jobs.create(**request)

        job = await self._call(
            "create fine-tuning job", create_once, not_found_is_config=True
        )
        return _job_status(job)

    async def get_job(self, job_id: str) -> JobStatus:
        job = await self._call(
            "get fine-tuning job",
            lambda: self._client.fine_tuning.jobs.retrieve(job_id),
        )
        return _job_status(job)

    async def list_events(
        self, job_id: str, after: str | None = None
    ) -> list[JobEvent]:
        kwargs: dict[str, Any] = {"limit": 100}
        if after is not None:
            kwargs["after"] = after
        page = await self._call(
            "list fine-tuning events",
            lambda: self._client.fine_tuning.jobs.list_events(job_id, **kwargs),
        )
        events = [
            JobEvent(
                id=e.id,
                created_at=_when(getattr(e, "created_at", None)),
                level=getattr(e, "level", None) or "info",
                message=getattr(e, "message", None) or "",
                type=getattr(e, "type", None),
                data=_as_dict(getattr(e, "data", None)),
            )
            # OpenAI lists newest first; callers want a log.
            for e in reversed(page.data)
        ]
        # Stable: events of the same second keep the provider's order.
        return sorted(
            events, key=lambda e: e.created_at or datetime.min.replace(tzinfo=UTC)
        )

    async def list_checkpoints(self, job_id: str) -> list[Checkpoint]:
        page = await self._call(
            "list fine-tuning checkpoints",
            lambda: self._client.fine_tuning.jobs.checkpoints.list(job_id, limit=100),
        )
        checkpoints = []
        for c in page.data:
            metrics = _as_dict(getattr(c, "metrics", None)) or {}
            checkpoints.append(
                Checkpoint(
                    id=getattr(c, "id", None),
                    step=int(
                        getattr(c, "step_number", None) or metrics.get("step") or 0
                    ),
                    metrics={
                        k: float(v)
                        for k, v in metrics.items()
                        if isinstance(v, int | float) and not isinstance(v, bool)
                    },
                    fine_tuned_model_checkpoint=getattr(
                        c, "fine_tuned_model_checkpoint", None
                    ),
                    created_at=_when(getattr(c, "created_at", None)),
                )
            )
        return sorted(checkpoints, key=lambda c: c.step)

    async def cancel(self, job_id: str) -> JobStatus:
        job = await self._call(
            "cancel fine-tuning job",
            lambda: self._client.fine_tuning.jobs.cancel(job_id),
        )
        return _job_status(job)

    async def _call(
        self,
        what: str,
        make: Callable[[], Awaitable[T]],
        *,
        not_found_is_config: bool = False,
    ) -> T:
        errors = CREATE_ERRORS if not_found_is_config else ERRORS
        return await self._api.call(what, make, errors=errors)


async def wait_for_job(
    provider: FineTuneProvider,
    job_id: str,
    settings: FineTuneSettings,
    on_update: OnUpdate | None = None,
    *,
    deadline_s: float | None = None,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    should_cancel: Callable[[], Awaitable[bool]] | None = None,
) -> JobStatus:
    """Poll `job_id` until it is succeeded, failed or cancelled; return its last status.

    The wait starts at `poll_interval_s` and doubles while nothing changes, capped at
    `poll_max_s`; any change (status or new events) resets it. `on_update(status,
    new_events)` (sync or async) is called on the first poll and on every change, with the
    events not seen before, oldest first. Transient API failures are retried by the provider;
    one that outlasts its retries propagates (DependencyUnavailable), so a driver can resume.
    `deadline_s` (None: no limit) bounds the whole wait with DependencyUnavailable.
    `should_cancel()` is asked before every wait; once it says yes the job is cancelled (once)
    and the wait goes on until the provider reports it terminal.
    """
    started = time.monotonic()
    interval = settings.poll_interval_s
    seen: set[str] = set()
    last: JobStatus | None = None
    cancelling = False
    while True:
        status = await provider.get_job(job_id)
        events = [e for e in await provider.list_events(job_id) if e.id not in seen]
        seen.update(e.id for e in events)
        changed = last is None or status != last or bool(events)
        if changed and on_update is not None:
            result = on_update(status, events)
            if inspect.isawaitable(result):
                await result
        last = status
        if status.terminal:
            return status
        if not cancelling and should_cancel is not None and await should_cancel():
            log.info("fine-tuning job %s: cancel requested", job_id)
            await provider.cancel(job_id)
            cancelling = True
            continue
        interval = (
            settings.poll_interval_s
            if changed
            else min(settings.poll_max_s, interval * 2)
        )
        if (
            deadline_s is not None
            and time.monotonic() - started + interval > deadline_s
        ):
            raise DependencyUnavailable(
                f"fine-tuning job {job_id} still {status.status} after {deadline_s:.0f}s",
                retry_after_s=settings.poll_interval_s,
                details=[{"provider": settings.provider, "reason": "deadline"}],
            )
        await sleep(interval)


def _job_status(job: Any) -> JobStatus:
    raw = str(getattr(job, "status", "") or "")
    error = getattr(job, "error", None)
    message = getattr(error, "message", None) if error is not None else None
    code = getattr(error, "code", None) if error is not None else None
    return JobStatus(
        id=job.id,
        status=_STATUS_ALIASES.get(raw, raw),
        model=getattr(job, "model", None),
        fine_tuned_model=getattr(job, "fine_tuned_model", None),
        trained_tokens=getattr(job, "trained_tokens", None),
        error=message or None,
        error_code=code or None,
        created_at=_when(getattr(job, "created_at", None)),
        finished_at=_when(getattr(job, "finished_at", None)),
    )


def _when(epoch: Any) -> datetime | None:
    return (
        datetime.fromtimestamp(epoch, UTC) if isinstance(epoch, int | float) else None
    )


def _as_dict(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, dict):
        return value
    dump = getattr(value, "model_dump", None)
    return dump(exclude_none=True) if callable(dump) else None
