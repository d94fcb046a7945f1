"""SQL of training: dataset builds and their lineage, session selection for a build.
Fine-tunes, the model registry and evaluations have their own modules beside this one."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from actors.storage.postgres import json_dumps
from configs.dataset import SessionSelection

__all__ = [
    "claim_dataset", "dataset_row", "fail_dataset", "finish_dataset", "insert_dataset",
    "list_datasets", "select_sessions", "session_sizes", "set_dataset_job",
]

Conn = asyncpg.Connection | asyncpg.Pool


async def insert_dataset(conn: Conn, dataset_id: uuid.UUID, org_id: uuid.UUID, name: str,
                         config: dict[str, Any], code_version: str, *,
                         workspace_id: uuid.UUID | None = None) -> None:
    """A queued build (in `workspace_id`, else the organisation's default workspace);
    inserting the same id again is a no-op (a retried submit)."""
    await conn.execute(
        "INSERT INTO datasets (dataset_id, org_id, name, config, code_version, workspace_id)"
        " VALUES ($1, $2, $3, $4::jsonb, $5, $6) ON CONFLICT (dataset_id) DO NOTHING",
        dataset_id, org_id, name, json_dumps(config), code_version, workspace_id)


async def set_dataset_job(conn: Conn, dataset_id: uuid.UUID, ray_job_id: str) -> None:
    await conn.execute("UPDATE datasets SET ray_job_id = $2, updated_at = now() WHERE dataset_id = $1",
                       dataset_id, ray_job_id)


async def claim_dataset(conn: Conn, dataset_id: uuid.UUID) -> str | None:
    """Mark the build running unless it already succeeded; returns the status it had
    (None: no such dataset). A rerun of a failed or interrupted build starts it over."""
    row = await conn.fetchrow(
        "WITH old AS (SELECT status FROM datasets WHERE dataset_id = $1 FOR UPDATE)"
        " UPDATE datasets d SET status = CASE WHEN old.status = 'succeeded' THEN old.status"
        " ELSE 'running' END, started_at = CASE WHEN old.status = 'succeeded' THEN d.started_at"
        " ELSE now() END, error = CASE WHEN old.status = 'succeeded' THEN d.error END,"
        " updated_at = now() FROM old WHERE d.dataset_id = $1 RETURNING old.status",
        dataset_id)
    return None if row is None else str(row["status"])


async def finish_dataset(conn: Conn, dataset_id: uuid.UUID, *, train_sessions: Sequence[uuid.UUID],
                         validation_sessions: Sequence[uuid.UUID], counts: dict[str, Any],
                         report: dict[str, Any], files: dict[str, Any]) -> None:
    await conn.execute(
        "UPDATE datasets SET status = 'succeeded', train_sessions = $2, validation_sessions = $3,"
        " counts = $4::jsonb, report = $5::jsonb, files = $6::jsonb, error = NULL,"
        " finished_at = now(), updated_at = now() WHERE dataset_id = $1",
        dataset_id, list(train_sessions), list(validation_sessions), json_dumps(counts),
        json_dumps(report), json_dumps(files))


async def fail_dataset(conn: Conn, dataset_id: uuid.UUID, error: str,
                       report: dict[str, Any] | None = None) -> None:
    """Mark a queued or running build failed; one that has ended keeps its outcome (a late
    reconcile never overwrites the outcome, or the reason, its driver recorded)."""
    await conn.execute(
        "UPDATE datasets SET status = 'failed', error = $2, report = coalesce($3::jsonb, report),"
        " finished_at = now(), updated_at = now()"
        " WHERE dataset_id = $1 AND status IN ('queued', 'running')",
        dataset_id, error[:2000], None if report is None else json_dumps(report))


async def dataset_row(conn: Conn, dataset_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM datasets WHERE dataset_id = $1", dataset_id)


async def list_datasets(conn: Conn, org_id: uuid.UUID, limit: int = 50, *,
                        workspace_id: uuid.UUID | None = None) -> list[asyncpg.Record]:
    """The latest builds of an organisation, or of one of its workspaces."""
    return await conn.fetch(
        "SELECT * FROM datasets WHERE org_id = $1 AND ($3::uuid IS NULL OR workspace_id = $3)"
        " ORDER BY created_at DESC LIMIT $2", org_id, limit, workspace_id)


async def select_sessions(conn: Conn, org_id: uuid.UUID,
                          selection: SessionSelection) -> list[asyncpg.Record]:
    """The sessions a build takes, oldest first: (session_id, type, task, quality_overall)."""
    return await conn.fetch(
        "SELECT session_id, type, task, quality_overall FROM sessions"
        " WHERE org_id = $1 AND status = ANY($2::text[])"
        " AND ($3::double precision IS NULL OR quality_overall >= $3)"
        " AND ($4::text[] IS NULL OR type = ANY($4::text[]))"
        " AND ($5::timestamptz IS NULL OR coalesce(started_at, created_at) >= $5)"
        " AND ($6::timestamptz IS NULL OR coalesce(started_at, created_at) < $6)"
        # strpos, not LIKE: the user's text may hold % or _
        " AND ($7::text IS NULL OR strpos(lower(coalesce(task, '')), lower($7)) > 0)"
        " AND ($9::uuid IS NULL OR workspace_id = $9) AND deleted_at IS NULL"
        " ORDER BY coalesce(started_at, created_at), session_id LIMIT $8",
        org_id, list(selection.statuses), selection.min_quality,
        list(selection.session_types) if selection.session_types else None,
        selection.since, selection.until, selection.task_contains, selection.max_sessions,
        selection.workspace_id)


async def session_sizes(conn: Conn, session_ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[int, int]]:
    """(event_count, screenshot_count) of each session: what a build sizes its tasks by."""
    rows = await conn.fetch("SELECT session_id, event_count, screenshot_count FROM sessions"
                            " WHERE session_id = ANY($1::uuid[])", session_ids)
    return {r["session_id"]: (r["event_count"], r["screenshot_count"]) for r in rows}
