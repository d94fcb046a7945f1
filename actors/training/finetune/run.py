"""One fine-tune, driven to the end and resumable: upload the dataset's files, start the
provider job, watch it (events, status, cancel requests), retry a job that failed for a
retryable reason, and register the model. Every step is recorded in `finetunes` before the
next starts; a driver that dies is replaced by `--resume`, which continues from the row."""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from actors.errors import InvalidInput, NotFound
from actors.training.finetune import FineTuneProvider, JobEvent, JobStatus, make_provider, wait_for_job
from actors.storage import finetune_repo as repo
from actors.storage.objectstore import ObjectStore, make_object_store
from actors.storage.postgres import connect_pool
from actors.storage.training_repo import dataset_row
from configs.finetune import FineTuneSettings
from configs.settings import TracemillSettings

__all__ = ["run_finetune", "stored_settings"]

log = logging.getLogger("tracemill.jobs.finetune")
_OUR_STATUS = {"queued": "submitted", "validating_files": "submitted", "running": "running"}
_COLUMNS = ("training_file_id", "validation_file_id")


def stored_settings(row: asyncpg.Record) -> FineTuneSettings:
    """The settings a fine-tune was started with (the API key is never stored: the client
    reads OPENAI_API_KEY, or the resuming operator passes a config)."""
    return FineTuneSettings.model_validate(json.loads(row["settings"]))


async def run_finetune(settings: TracemillSettings, ft: FineTuneSettings, finetune_id: uuid.UUID, *,
                       dataset_id: uuid.UUID | None = None, org_id: uuid.UUID | None = None,
                       provider: FineTuneProvider | None = None) -> asyncpg.Record:
    """Create the fine-tune (with `dataset_id`) or resume it; return its final row."""
    pool = await connect_pool(settings.database)
    store = make_object_store(settings.object_store)
    provider = provider or make_provider(ft, settings.object_store)
    try:
        if await repo.finetune_row(pool, finetune_id) is None:
            await _create(pool, ft, finetune_id, dataset_id, org_id)
        run = _Run(pool, store, provider, ft, finetune_id)
        await run.drive()
        row = await repo.finetune_row(pool, finetune_id)
        assert row is not None
        return row
    finally:
        await provider.aclose()
        await store.close()
        await pool.close()


async def _create(pool: asyncpg.Pool, ft: FineTuneSettings, finetune_id: uuid.UUID,
                  dataset_id: uuid.UUID | None, org_id: uuid.UUID | None) -> None:
    if dataset_id is None:
        raise NotFound(f"no fine-tune {finetune_id} to resume")
    ds = await dataset_row(pool, dataset_id)
    if ds is None or (org_id is not None and ds["org_id"] != org_id):
        raise NotFound(f"no dataset {dataset_id}")
    if ds["status"] != "succeeded":
        raise InvalidInput(f"dataset {dataset_id} is {ds['status']}, not succeeded", code="dataset_not_ready")
    if ft.provider == "local":
        from actors.training.finetune.local_provider import preflight

        preflight(ft, ds)  # a missing extra or base model, a dataset without candidates: no row
    await repo.insert_finetune(pool, finetune_id, ds["org_id"], dataset_id, ft.provider, ft.base_model,
                               ft.model_dump(mode="json", exclude={"api_key"}))


class _Run:
    def __init__(self, pool: asyncpg.Pool, store: ObjectStore, provider: FineTuneProvider,
                 ft: FineTuneSettings, finetune_id: uuid.UUID) -> None:
        self.pool, self.store, self.provider, self.ft, self.id = pool, store, provider, ft, finetune_id

    async def row(self) -> asyncpg.Record:
        row = await repo.finetune_row(self.pool, self.id)
        assert row is not None
        return row

    async def update(self, **values: Any) -> None:
        await repo.update_finetune(self.pool, self.id, **values)

    async def drive(self) -> None:
        row = await self.row()
        if row["status"] in repo.TERMINAL:
            log.info("fine-tune %s is already %s", self.id, row["status"])
            return
        await self.upload_files(row)
        while not await self.attempt():
            pass

    async def upload_files(self, row: asyncpg.Record) -> None:
        ds = await dataset_row(self.pool, row["dataset_id"])
        files = json.loads(ds["files"])
        todo = [(name, col) for name, col in zip(self.provider.dataset_files, _COLUMNS)
                if row[col] is None and name in files and files[name]["bytes"] > 0]
        if not todo:
            return
        await self.update(status="uploading")
        with tempfile.TemporaryDirectory(prefix="tracemill-ft-") as tmp:
            for name, column in todo:
                data = await self.store.get(files[name]["key"])
                if hashlib.sha256(data).hexdigest() != files[name]["sha256"]:
                    raise InvalidInput(f"{name} of dataset {row['dataset_id']} does not match its "
                                       "recorded sha256", code="dataset_corrupt")
                path = Path(tmp) / name
                path.write_bytes(data)
                file_id = await self.provider.upload(path)
                await self.update(**{column: file_id})
                log.info("fine-tune %s: uploaded %s (%d bytes) as %s", self.id, name, len(data), file_id)

    async def attempt(self) -> bool:
        """Start (or find) the current provider job and watch it; True when the fine-tune is
        over, False when a failed job is to be started again."""
        row = await self.row()
        job_id, attempt = row["provider_job_id"], row["attempt"]
        if job_id is None:
            if row["cancel_requested"]:
                await self.update(status="cancelled")
                return True
            attempt += 1
            # The key ties the provider job to (fine-tune, attempt): a resumed driver finds
            # the job its predecessor started instead of starting a second one.
            job = await self.provider.create_job(row["training_file_id"], row["validation_file_id"],
                                                 self.ft, request_key=f"{self.id}:{attempt}")
            job_id = job.id
            await self.update(provider_job_id=job_id, attempt=attempt, status="submitted")
            log.info("fine-tune %s: provider job %s started (attempt %d)", self.id, job_id, attempt)

        async def on_update(status: JobStatus, events: list[JobEvent]) -> None:
            await repo.record_events(self.pool, self.id, job_id, events)
            for event in events:
                log.info("fine-tune %s: %s", self.id, event.message)
            if status.status in _OUR_STATUS:
                await self.update(status=_OUR_STATUS[status.status])

        final = await wait_for_job(self.provider, job_id, self.ft, on_update,
                                   should_cancel=lambda: repo.cancel_requested(self.pool, self.id))
        return await self.conclude(job_id, attempt, final)

    async def conclude(self, job_id: str, attempt: int, final: JobStatus) -> bool:
        if final.status == "succeeded" and not final.fine_tuned_model:
            await self.update(status="failed", error=f"provider job {job_id} succeeded without naming its model")
            return True
        if final.status == "succeeded":
            await self.register(job_id, final)
            return True
        if final.status == "cancelled":
            await self.update(status="cancelled")
            return True
        error = f"provider job {job_id} failed: {final.error or 'no reason given'} ({final.error_code})"
        if final.error_code in self.ft.retry_error_codes and attempt < self.ft.job_attempts:
            log.warning("fine-tune %s: %s; starting attempt %d of %d", self.id, error, attempt + 1,
                        self.ft.job_attempts)
            await self.update(provider_job_id=None, error=error)
            return False
        await self.update(status="failed", error=error)
        log.error("fine-tune %s: %s", self.id, error)
        return True

    async def register(self, job_id: str, final: JobStatus) -> None:
        checkpoints = await self.provider.list_checkpoints(job_id)
        await repo.record_checkpoints(self.pool, self.id, job_id, checkpoints)
        last = max(checkpoints, key=lambda c: c.step).metrics if checkpoints else {}
        metrics = {**last, "trained_tokens": final.trained_tokens, "checkpoints": len(checkpoints),
                   "provider_job_id": job_id}
        row = await self.row()
        async with self.pool.acquire() as conn:
            model = await repo.register_model(conn, row, str(final.fine_tuned_model), self.ft.suffix or "",
                                              metrics)
        await self.update(status="succeeded", fine_tuned_model=final.fine_tuned_model,
                          trained_tokens=final.trained_tokens, error=None)
        log.info("fine-tune %s succeeded: %s registered as version %d", self.id, model["name"],
                 model["version"])
