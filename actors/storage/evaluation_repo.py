"""SQL of the evaluation job: the dataset it reads, and its row in `evaluations`.

A row is written only once the dataset and its validation split were found to be usable, so a
mistyped id or a dataset still building leaves nothing behind. The row is inserted as
'running' (so a dashboard sees the job), then finished with its metrics or marked failed.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from actors.errors import InvalidInput, NotFound
from actors.storage.postgres import json_dumps

__all__ = [
    "DatasetRef", "finish_evaluation", "get_dataset", "insert_running", "latest_evaluation",
    "mark_failed",
]


@dataclass(frozen=True)
class DatasetRef:
    dataset_id: uuid.UUID
    org_id: uuid.UUID
    name: str
    status: str
    files: dict[str, Any]


def _uuid(value: str | uuid.UUID, what: str) -> uuid.UUID:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        raise InvalidInput(f"{what} must be a UUID, not {str(value)[:60]!r}") from None


def _json(value: Any) -> Any:
    # asyncpg hands jsonb back as text unless a codec was registered on the pool.
    return json.loads(value) if isinstance(value, str) else value


async def get_dataset(pool: asyncpg.Pool, dataset_id: str | uuid.UUID) -> DatasetRef:
    """The dataset row; NotFound when there is none."""
    did = _uuid(dataset_id, "dataset id")
    row = await pool.fetchrow(
        "SELECT dataset_id, org_id, name, status, files FROM datasets WHERE dataset_id = $1", did)
    if row is None:
        raise NotFound(f"dataset {did} not found")
    return DatasetRef(row["dataset_id"], row["org_id"], row["name"], row["status"],
                      _json(row["files"]) or {})


async def insert_running(pool: asyncpg.Pool, *, org_id: uuid.UUID, dataset_id: uuid.UUID,
                         provider: str, model: str, examples: int,
                         details: dict[str, Any]) -> uuid.UUID:
    eval_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO evaluations (eval_id, org_id, dataset_id, provider, model, status, examples,"
        " details) VALUES ($1, $2, $3, $4, $5, 'running', $6, $7::jsonb)",
        eval_id, org_id, dataset_id, provider, model, examples, json_dumps(details))
    return eval_id


async def finish_evaluation(pool: asyncpg.Pool, eval_id: uuid.UUID, metrics: dict[str, Any],
                            details: dict[str, Any]) -> None:
    await pool.execute(
        "UPDATE evaluations SET status = 'succeeded', examples = $2, answered = $3,"
        " step_accuracy = $4, element_accuracy = $5, action_type_accuracy = $6,"
        " details = $7::jsonb, finished_at = now() WHERE eval_id = $1",
        eval_id, metrics["examples"], metrics["answered"], metrics["step_accuracy"],
        metrics["element_accuracy"], metrics["action_type_accuracy"], json_dumps(details))


async def mark_failed(pool: asyncpg.Pool, eval_id: uuid.UUID, error: str,
                      details: dict[str, Any] | None = None) -> None:
    await pool.execute(
        "UPDATE evaluations SET status = 'failed', error = $2,"
        " details = COALESCE($3::jsonb, details), finished_at = now() WHERE eval_id = $1",
        eval_id, error[:2000], json_dumps(details) if details is not None else None)


async def latest_evaluation(pool: asyncpg.Pool, model: str,
                            dataset_id: str | uuid.UUID | None = None) -> dict[str, Any] | None:
    """The newest succeeded evaluation of `model` (on that dataset when given), as a dict with
    `details` decoded and the dataset's name; None when the model was never evaluated."""
    did = _uuid(dataset_id, "dataset id") if dataset_id is not None else None
    row = await pool.fetchrow(
        "SELECT e.*, d.name AS dataset_name FROM evaluations e JOIN datasets d USING (dataset_id)"
        " WHERE e.model = $1 AND e.status = 'succeeded' AND ($2::uuid IS NULL OR e.dataset_id = $2)"
        " ORDER BY e.finished_at DESC NULLS LAST, e.created_at DESC LIMIT 1", model, did)
    if row is None:
        return None
    out = dict(row)
    out["details"] = _json(out.get("details")) or {}
    return out
