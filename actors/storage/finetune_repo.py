"""SQL of fine-tunes: their state machine, provider events and checkpoints, and the model
registry. The driver records each step's outcome before taking the next, so a resumed driver
(`--resume`) continues from the row: uploads and the provider job are never done twice."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from actors.training.finetune.provider import Checkpoint, JobEvent
from actors.storage.postgres import json_dumps

__all__ = [
    "cancel_requested", "finetune_row", "insert_finetune", "model_for", "model_row",
    "record_checkpoints", "record_events", "register_model", "request_cancel", "update_finetune",
]

Conn = asyncpg.Connection | asyncpg.Pool
TERMINAL = ("succeeded", "failed", "cancelled")
_COLUMNS = frozenset({"status", "attempt", "training_file_id", "validation_file_id", "provider_job_id",
                      "fine_tuned_model", "trained_tokens", "error", "ray_job_id"})


async def insert_finetune(conn: Conn, finetune_id: uuid.UUID, org_id: uuid.UUID, dataset_id: uuid.UUID,
                          provider: str, base_model: str, settings: dict[str, Any]) -> None:
    await conn.execute(
        "INSERT INTO finetunes (finetune_id, org_id, dataset_id, provider, base_model, settings)"
        " VALUES ($1, $2, $3, $4, $5, $6::jsonb) ON CONFLICT (finetune_id) DO NOTHING",
        finetune_id, org_id, dataset_id, provider, base_model, json_dumps(settings))


async def finetune_row(conn: Conn, finetune_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM finetunes WHERE finetune_id = $1", finetune_id)


async def update_finetune(conn: Conn, finetune_id: uuid.UUID, **values: Any) -> None:
    """Set some columns; a terminal row is never moved again (a late poll cannot undo it)."""
    unknown = set(values) - _COLUMNS
    if unknown:
        raise ValueError(f"not finetune columns: {sorted(unknown)}")
    names = list(values)
    sets = ", ".join(f"{n} = ${i}" for i, n in enumerate(names, 2))
    finished = ", finished_at = now()" if values.get("status") in TERMINAL else ""
    await conn.execute(
        f"UPDATE finetunes SET {sets}, updated_at = now(){finished}"
        f" WHERE finetune_id = $1 AND status NOT IN ('succeeded', 'failed', 'cancelled')",
        finetune_id, *(values[n] for n in names))


async def request_cancel(conn: Conn, finetune_id: uuid.UUID, org_id: uuid.UUID) -> asyncpg.Record | None:
    """Flag a fine-tune for cancelling (its driver acts on it); None when there is no such row."""
    return await conn.fetchrow(
        "UPDATE finetunes SET cancel_requested = true, updated_at = now()"
        " WHERE finetune_id = $1 AND org_id = $2 RETURNING *", finetune_id, org_id)


async def cancel_requested(conn: Conn, finetune_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval("SELECT cancel_requested FROM finetunes WHERE finetune_id = $1",
                                    finetune_id))


async def record_events(conn: Conn, finetune_id: uuid.UUID, job_id: str, events: Sequence[JobEvent]) -> None:
    await conn.executemany(
        "INSERT INTO finetune_events (finetune_id, provider_job_id, event_id, created_at, level,"
        " message, data) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb) ON CONFLICT DO NOTHING",
        [(finetune_id, job_id, e.id, e.created_at, e.level, e.message,
          None if e.data is None else json_dumps(e.data)) for e in events])


async def record_checkpoints(conn: Conn, finetune_id: uuid.UUID, job_id: str,
                             checkpoints: Sequence[Checkpoint]) -> None:
    await conn.executemany(
        "INSERT INTO finetune_checkpoints (finetune_id, provider_job_id, step, metrics, checkpoint_model)"
        " VALUES ($1, $2, $3, $4::jsonb, $5) ON CONFLICT DO NOTHING",
        [(finetune_id, job_id, c.step, json_dumps(c.metrics), c.fine_tuned_model_checkpoint)
         for c in checkpoints])


async def register_model(conn: asyncpg.Connection, row: asyncpg.Record, name: str, suffix: str,
                         metrics: dict[str, Any]) -> asyncpg.Record:
    """The fine-tune's model in the registry, with the next version of its lineage; registering
    the same fine-tune again returns the existing entry."""
    async with conn.transaction():
        # One registration per lineage at a time, so two versions never get the same number.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))",
                           f"{row['org_id']}:{row['provider']}:{row['base_model']}:{suffix}")
        existing = await conn.fetchrow("SELECT * FROM models WHERE finetune_id = $1", row["finetune_id"])
        if existing is not None:
            return existing
        return await conn.fetchrow(
            "INSERT INTO models (model_id, org_id, name, version, provider, base_model, suffix,"
            " finetune_id, dataset_id, metrics) SELECT $1, $2, $3, coalesce(max(version), 0) + 1,"
            " $4, $5, $6, $7, $8, $9::jsonb FROM models WHERE org_id = $2 AND provider = $4"
            " AND base_model = $5 AND suffix = $6 RETURNING *",
            uuid.uuid4(), row["org_id"], name, row["provider"], row["base_model"], suffix,
            row["finetune_id"], row["dataset_id"], json_dumps(metrics))


async def model_for(conn: Conn, finetune_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM models WHERE finetune_id = $1", finetune_id)


async def model_row(conn: Conn, model_id: uuid.UUID) -> asyncpg.Record | None:
    """A registered model by its id (the caller checks the organisation)."""
    return await conn.fetchrow("SELECT * FROM models WHERE model_id = $1", model_id)
