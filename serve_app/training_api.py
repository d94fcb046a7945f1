"""Training over HTTP: queue dataset builds and fine-tunes as Ray Jobs, read their state and
download a dataset's files. The jobs themselves are `jobs.build_dataset` / `jobs.finetune`, the
same code `ray job submit` and the CLI run; these handlers only record, submit and read."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from actors.errors import Conflict, InvalidInput, NotFound, details_from_validation_error
from actors import quotas
from actors.accounts.audit import actor_of, audit
from actors.auth import Principal
from actors.storage import finetune_repo, training_repo
from actors.storage.postgres import with_retries
from actors.version import code_version
from configs.dataset import DatasetBuildConfig
from configs.finetune import FineTuneSettings
from serve_app import ray_jobs
from serve_app.http_io import read_json
from serve_app.services import Services

__all__ = ["FineTuneCreate", "cancel_finetune", "create_dataset", "create_finetune", "dataset_file",
           "get_dataset", "get_finetune", "list_datasets"]

DATASET_FILES = {"train.jsonl": "application/jsonl", "validation.jsonl": "application/jsonl",
                 "report.json": "application/json", "quality.png": "image/png",
                 "train.ranking.jsonl": "application/jsonl", "validation.ranking.jsonl": "application/jsonl",
                 "train.parquet": "application/vnd.apache.parquet",
                 "validation.parquet": "application/vnd.apache.parquet"}
_LIST_LIMIT = 100


class FineTuneCreate(BaseModel):
    """A fine-tune of a built dataset. The provider, its host and key are the deployment's."""

    model_config = ConfigDict(extra="forbid")
    dataset_id: uuid.UUID
    model: str | None = Field(None, min_length=1, description="base model; default: the deployment's")
    n_epochs: int | str | None = None
    batch_size: int | str | None = None
    learning_rate_multiplier: float | str | None = None
    suffix: str | None = None
    seed: int | None = None
    # Bounded below so no caller can make the driver hammer the provider.
    poll_interval_s: float | None = Field(None, ge=1.0, le=3600)
    poll_max_s: float | None = Field(None, ge=1.0, le=3600)
    provider: Literal["openai", "local"] | None = Field(None, description="default: the deployment's")
    local: dict[str, Any] | None = Field(
        None, description="the local provider's settings over the deployment's: base_model, epochs, "
        "batch_size, learning_rate, max_length, max_candidates, num_workers, use_gpu, seed, …")


def _uuid(raw: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound(f"no {what} {raw[:64]!r}") from None


def _invalid(exc: ValidationError, message: str) -> InvalidInput:
    return InvalidInput(message, details_from_validation_error(exc, "body"))


# ----------------------------------------------------------------------------- datasets

async def create_dataset(services: Services, request: Request) -> JSONResponse:
    principal = await services.authorize(request)
    raw = await read_json(request, services.settings.ingest.max_body_bytes)
    try:
        config = DatasetBuildConfig.model_validate(raw)
    except ValidationError as exc:
        raise _invalid(exc, "invalid dataset config") from None
    if config.selection.org_id not in (None, principal.org_id):
        raise InvalidInput("invalid dataset config", [{"field": "body.selection.org_id",
                                                       "error": "datasets draw on your own organisation only"}])
    if config.selection.workspace_id not in (None, principal.workspace_id):
        raise InvalidInput("invalid dataset config", [{"field": "body.selection.workspace_id",
                                                       "error": "datasets draw on your own workspace only"}])
    config = config.model_copy(update={"selection": config.selection.model_copy(
        update={"workspace_id": principal.workspace_id})})
    dataset_id = uuid.uuid4()
    pool = await services.db()
    async with quotas.job_slot(pool, services.settings.quotas, principal.org_id, "dataset") as conn:
        await training_repo.insert_dataset(conn, dataset_id, principal.org_id, config.name,
                                           config.model_dump(mode="json"), code_version(),
                                           workspace_id=principal.workspace_id)
        await audit(conn, "dataset.start", actor_of(principal), target=str(dataset_id),
                    address=services.guard.address(), details={"name": config.name})
    try:
        job = await ray_jobs.submit(f"tracemill-dataset-{dataset_id}", "jobs.build_dataset",
                                    ["--dataset-id", str(dataset_id)])
    except Exception as exc:
        await training_repo.fail_dataset(pool, dataset_id, str(exc))
        raise
    await training_repo.set_dataset_job(pool, dataset_id, job)
    return JSONResponse({"dataset_id": str(dataset_id), "status": "queued", "ray_job_id": job},
                        status_code=202)


async def _dataset(services: Services, request: Request, raw_id: str) -> Any:
    return (await _dataset_of(services, request, raw_id))[1]


async def _dataset_of(services: Services, request: Request, raw_id: str) -> tuple[Principal, Any]:
    principal = await services.authorize(request)
    dataset_id = _uuid(raw_id, "dataset")
    pool = await services.db()
    row = await with_retries(lambda: training_repo.dataset_row(pool, dataset_id), attempts=2, what="dataset read")
    if not principal.in_workspace(row):
        raise NotFound(f"no dataset {dataset_id}")
    return principal, await _settle_dataset(pool, row)


async def _settle_dataset(pool: Any, row: Any) -> Any:
    """The row, failed with Ray's reason when its driver's job ended while the row still says
    queued/running (a driver killed, or gone before it could record anything)."""
    if row["status"] in ("queued", "running") and row["ray_job_id"]:
        if (why := await ray_jobs.job_ended(row["ray_job_id"])) is not None:
            await training_repo.fail_dataset(pool, row["dataset_id"], f"{why} (the build recorded no outcome)")
            row = await training_repo.dataset_row(pool, row["dataset_id"])
    return row


def dataset_view(row: Any) -> dict[str, Any]:
    files = json.loads(row["files"]) if row["files"] else {}
    return {
        "dataset_id": str(row["dataset_id"]), "name": row["name"], "status": row["status"],
        "counts": json.loads(row["counts"]) if row["counts"] else None,
        "report": json.loads(row["report"]) if row["report"] else None,
        "files": {name: {"bytes": f["bytes"], "sha256": f["sha256"],
                         "url": f"/v1/datasets/{row['dataset_id']}/files/{name}"} for name, f in files.items()},
        "sessions": {"train": len(row["train_sessions"]), "validation": len(row["validation_sessions"])},
        "error": row["error"], "config": json.loads(row["config"]), "code_version": row["code_version"],
        "ray_job_id": row["ray_job_id"],
        **{k: row[k].isoformat() if row[k] else None for k in ("created_at", "started_at", "finished_at")},
    }


async def get_dataset(services: Services, request: Request, raw_id: str) -> dict[str, Any]:
    return dataset_view(await _dataset(services, request, raw_id))


async def list_datasets(services: Services, request: Request) -> dict[str, Any]:
    principal = await services.authorize(request)
    pool = await services.db()
    rows = await training_repo.list_datasets(pool, principal.org_id, _LIST_LIMIT, workspace_id=principal.workspace_id)
    rows = await asyncio.gather(*(_settle_dataset(pool, r) for r in rows))
    return {"datasets": [{k: v for k, v in dataset_view(r).items() if k not in ("report", "config")}
                         for r in rows]}


async def dataset_file(services: Services, request: Request, raw_id: str, name: str) -> Response:
    principal, row = await _dataset_of(services, request, raw_id)
    if name not in DATASET_FILES:
        raise NotFound(f"no file {name[:64]!r}; a dataset has {', '.join(DATASET_FILES)}")
    if row["status"] != "succeeded":
        raise NotFound(f"dataset {row['dataset_id']} is {row['status']}; its files exist once it "
                       "succeeds", code="dataset_not_ready")
    files = json.loads(row["files"])
    if name not in files:  # e.g. a build from before the format existed, or with ranking off
        raise NotFound(f"dataset {row['dataset_id']} has no {name}; it has {', '.join(files)}")
    data = await services.store.get(files[name]["key"])
    await audit(await services.db(), "export.download", actor_of(principal), target=str(row["dataset_id"]),
                address=services.guard.address(), details={"what": "dataset_file", "file": name, "bytes": len(data)})
    return Response(content=data, media_type=DATASET_FILES[name],
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


# ----------------------------------------------------------------------------- fine-tunes

def _finetune_settings(services: Services, body: FineTuneCreate) -> FineTuneSettings:
    base = services.settings.finetune.model_dump()
    base.update(body.model_dump(exclude={"dataset_id", "local"}, exclude_none=True))
    if body.local:
        if "fail_once_after_epoch" in body.local:  # a test hook: never from a client
            raise InvalidInput("invalid fine-tune request", [{"field": "body.local.fail_once_after_epoch",
                                                             "error": "not settable over HTTP"}])
        base["local"] = {**base["local"], **body.local}
    try:
        return FineTuneSettings.model_validate(base)
    except ValidationError as exc:
        raise _invalid(exc, "invalid fine-tune request") from None


async def create_finetune(services: Services, request: Request) -> JSONResponse:
    principal = await services.authorize(request)
    raw = await read_json(request, services.settings.ingest.max_body_bytes)
    try:
        body = FineTuneCreate.model_validate(raw)
    except ValidationError as exc:
        raise _invalid(exc, "invalid fine-tune request") from None
    ft = _finetune_settings(services, body)
    pool = await services.db()
    ds = await training_repo.dataset_row(pool, body.dataset_id)
    if not principal.in_workspace(ds):
        raise NotFound(f"no dataset {body.dataset_id}")
    if ds["status"] != "succeeded":
        raise Conflict(f"dataset {body.dataset_id} is {ds['status']}, not succeeded", code="dataset_not_ready")
    if ft.provider == "local":
        from actors.training.finetune.local_provider import preflight

        preflight(ft, ds)  # no base model or no candidates: refused before a row or a job exists
    finetune_id = uuid.uuid4()
    async with quotas.job_slot(pool, services.settings.quotas, principal.org_id, "finetune") as conn:
        await finetune_repo.insert_finetune(conn, finetune_id, principal.org_id, body.dataset_id, ft.provider,
                                            ft.base_model, ft.model_dump(mode="json", exclude={"api_key"}))
        await audit(conn, "finetune.start", actor_of(principal), target=str(finetune_id),
                    address=services.guard.address(),
                    details={"dataset_id": str(body.dataset_id), "provider": ft.provider})
    try:
        job = await ray_jobs.submit(f"tracemill-finetune-{finetune_id}", "jobs.finetune",
                                    ["--resume", str(finetune_id)])
    except Exception as exc:
        await finetune_repo.update_finetune(pool, finetune_id, status="failed", error=str(exc))
        raise
    await finetune_repo.update_finetune(pool, finetune_id, ray_job_id=job)
    return JSONResponse({"finetune_id": str(finetune_id), "status": "queued", "ray_job_id": job},
                        status_code=202)


async def _finetune(services: Services, request: Request, raw_id: str) -> Any:
    principal = await services.authorize(request)
    finetune_id = _uuid(raw_id, "fine-tune")
    pool = await services.db()
    row = await finetune_repo.finetune_row(pool, finetune_id)
    if not principal.in_workspace(row):
        raise NotFound(f"no fine-tune {finetune_id}")
    return await _settle_finetune(pool, row)


async def _settle_finetune(pool: Any, row: Any) -> Any:
    """The row, failed with Ray's reason when its driver's job ended while the row is not
    terminal, so a client polling for succeeded|failed|cancelled gets an answer. The row is
    the record: a provider job the driver had started is named, since it may still run."""
    if row["status"] in finetune_repo.TERMINAL or not row["ray_job_id"]:
        return row
    if (why := await ray_jobs.job_ended(row["ray_job_id"])) is None:
        return row
    why = f"{why} (the fine-tune was {row['status']} and recorded no outcome)"
    if row["provider_job_id"]:
        why += f"; provider job {row['provider_job_id']} may still be running: cancel it at the provider"
    await finetune_repo.update_finetune(pool, row["finetune_id"], status="failed", error=why)
    return await finetune_repo.finetune_row(pool, row["finetune_id"])


async def get_finetune(services: Services, request: Request, raw_id: str) -> dict[str, Any]:
    row = await _finetune(services, request, raw_id)
    pool = await services.db()
    model = await finetune_repo.model_for(pool, row["finetune_id"])
    events = await pool.fetch("SELECT created_at, level, message FROM finetune_events WHERE finetune_id = $1"
                              " ORDER BY created_at DESC NULLS LAST, event_id DESC LIMIT 20", row["finetune_id"])
    return {
        "finetune_id": str(row["finetune_id"]), "dataset_id": str(row["dataset_id"]), "status": row["status"],
        "provider": row["provider"], "base_model": row["base_model"], "attempt": row["attempt"],
        "provider_job_id": row["provider_job_id"], "fine_tuned_model": row["fine_tuned_model"],
        "trained_tokens": row["trained_tokens"], "error": row["error"],
        "cancel_requested": row["cancel_requested"], "ray_job_id": row["ray_job_id"],
        "settings": json.loads(row["settings"]),
        "model": None if model is None else {"model_id": str(model["model_id"]), "name": model["name"],
                                             "version": model["version"],
                                             "metrics": json.loads(model["metrics"])},
        "events": [{"at": e["created_at"].isoformat() if e["created_at"] else None, "level": e["level"],
                    "message": e["message"]} for e in reversed(events)],
        **{k: row[k].isoformat() if row[k] else None for k in ("created_at", "updated_at", "finished_at")},
    }


async def cancel_finetune(services: Services, request: Request, raw_id: str) -> JSONResponse:
    row = await _finetune(services, request, raw_id)
    await finetune_repo.request_cancel(await services.db(), row["finetune_id"], row["org_id"])
    return JSONResponse({"finetune_id": str(row["finetune_id"]), "status": row["status"],
                         "cancel_requested": True}, status_code=202)
