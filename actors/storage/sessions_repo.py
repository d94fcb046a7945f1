"""SQL for sessions and screenshots. Interactions are written by the shard's group commit."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from actors.storage.postgres import json_dumps

__all__ = [
    "insert_session",
    "fetch_session",
    "fetch_session_state",
    "mark_finalizing",
    "insert_screenshot",
    "fetch_screenshot",
]

_SESSION_COLUMNS = (
    "session_id, org_id, type, status, task, event_count, screenshot_count, duplicate_count,"
    " acked_through, max_seq, outcome, last_seq, completeness, selector_reliability,"
    " screenshot_quality, training_value, quality_overall, quality_reasons, archive_key,"
    " archive_sha256, archive_bytes, started_at, ended_at, created_at, updated_at,"
    " client, user_agent, viewport, metadata, quality_suggestions, finalize_stage, finalize_error,"
    " workspace_id, created_by_key, recorder_id"
)


async def insert_session(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    session_id: uuid.UUID,
    org_id: uuid.UUID,
    fields: dict[str, Any],
    request_hash: bytes,
) -> asyncpg.Record | None:
    """Insert a new session; None when the id exists already (the caller compares). The owner
    fields (`workspace_id`, `created_by_key`, `recorder_id`) come from the creating key; a
    missing workspace is the organisation's default (migration 0009's trigger)."""
    return await conn.fetchrow(
        "INSERT INTO sessions (session_id, org_id, type, task, client, user_agent, viewport,"
        " metadata, started_at, request_hash, workspace_id, created_by_key, recorder_id)"
        " VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7::jsonb, $8::jsonb, $9, $10, $11, $12, $13)"
        " ON CONFLICT (session_id) DO NOTHING RETURNING session_id, status",
        session_id,
        org_id,
        fields["type"],
        fields.get("task"),
        _jsonb(fields.get("client")),
        fields.get("user_agent"),
        _jsonb(fields.get("viewport")),
        _jsonb(fields.get("metadata")),
        fields.get("started_at"),
        request_hash,
        _uuid_or_none(fields.get("workspace_id")),
        _uuid_or_none(fields.get("created_by_key")),
        _uuid_or_none(fields.get("recorder_id")),
    )


def _uuid_or_none(value: Any) -> uuid.UUID | None:
    return None if value is None else uuid.UUID(str(value))


async def fetch_session(
    conn: asyncpg.Connection | asyncpg.Pool, session_id: uuid.UUID, org_id: uuid.UUID | None = None
) -> asyncpg.Record | None:
    """One session's row; with `org_id`, only when it belongs to that organisation and is not
    deleted (without it, the shard's own lookup: a deleted row still holds its id)."""
    if org_id is None:
        return await conn.fetchrow(
            f"SELECT {_SESSION_COLUMNS}, request_hash FROM sessions WHERE session_id = $1", session_id
        )
    return await conn.fetchrow(
        f"SELECT {_SESSION_COLUMNS}, request_hash FROM sessions WHERE session_id = $1 AND org_id = $2"
        " AND deleted_at IS NULL",  # a deleted session is gone for every reader (issue 18.3)
        session_id,
        org_id,
    )


async def fetch_session_state(
    conn: asyncpg.Connection | asyncpg.Pool, session_id: uuid.UUID
) -> tuple[asyncpg.Record, list[int]] | None:
    """What a shard needs to rebuild a session after a restart: its row and the seqs above
    `acked_through` (there are few: only what arrived out of order)."""
    row = await conn.fetchrow(
        "SELECT org_id, status, acked_through FROM sessions WHERE session_id = $1", session_id
    )
    if row is None:
        return None
    seqs = await conn.fetch(
        "SELECT seq FROM interactions WHERE session_id = $1 AND seq > $2",
        session_id,
        row["acked_through"],
    )
    return row, [r["seq"] for r in seqs]


async def mark_finalizing(
    conn: asyncpg.Connection | asyncpg.Pool, session_id: uuid.UUID, finish: dict[str, Any]
) -> str:
    """recording → finalizing, once; finishing again leaves the first finish's facts in place."""
    status = await conn.fetchval(
        "UPDATE sessions SET status = 'finalizing', finalize_stage = 'screenshots', ended_at = coalesce($2, now()),"
        " outcome = $3, last_seq = $4, updated_at = now()"
        " WHERE session_id = $1 AND status = 'recording' RETURNING status",
        session_id,
        finish.get("ended_at"),
        finish.get("outcome"),
        finish.get("last_seq"),
    )
    if status is None:
        status = await conn.fetchval("SELECT status FROM sessions WHERE session_id = $1", session_id)
    return str(status)


async def insert_screenshot(pool: asyncpg.Pool, row: dict[str, Any]) -> bool:
    """Record a durable screenshot; False when the same (session, screenshot) existed already."""
    async with pool.acquire() as tx, tx.transaction():
        created = await tx.fetchval(
            "INSERT INTO screenshots (session_id, screenshot_id, seq, captured_at, trigger,"
            " content_type, raw_key, bytes, width, height, sha256, upload_facts)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb)"
            " ON CONFLICT (session_id, screenshot_id) DO NOTHING RETURNING true",
            row["session_id"], row["screenshot_id"], row.get("seq"), row.get("captured_at"),
            row.get("trigger"), row["content_type"], row["raw_key"], row["bytes"],
            row["width"], row["height"], row["sha256"],
            None if row.get("upload_facts") is None else json_dumps(row["upload_facts"]),
        )
        if created:
            await tx.execute(
                "UPDATE sessions SET screenshot_count = screenshot_count + 1, updated_at = now()"
                " WHERE session_id = $1",
                row["session_id"],
            )
    return bool(created)


async def fetch_screenshot(
    conn: asyncpg.Connection | asyncpg.Pool, session_id: uuid.UUID, screenshot_id: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM screenshots WHERE session_id = $1 AND screenshot_id = $2",
        session_id,
        screenshot_id,
    )


def _jsonb(value: Any) -> str | None:
    return None if value is None else json_dumps(value)
