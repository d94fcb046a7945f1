"""SQL of the processing pipeline: screenshot results, finalisation progress, analyses,
archives, the vision cache and the privacy audit. Every write is idempotent."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from actors.crypto.event_fields import decrypt_event_rows
from actors.storage.postgres import json_dumps

__all__ = [
    "add_privacy_counts", "claim_finalize_attempt", "drop_raw_key", "event_rows", "events_before",
    "finish_finalization", "mark_failed", "mark_screenshot_compressed", "mark_screenshot_failed",
    "pending_finalizations", "pending_screenshots", "record_analysis", "record_archive",
    "record_vision", "screenshot_rows", "session_row", "set_duplicates", "set_stage",
    "vision_cache_get", "vision_cache_put", "vision_call",
]

Conn = asyncpg.Connection | asyncpg.Pool


async def session_row(conn: Conn, session_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM sessions WHERE session_id = $1", session_id)


async def event_rows(conn: Conn, session_id: uuid.UUID, after_seq: int = -1,
                     limit: int | None = None) -> list[asyncpg.Record]:
    """Stored (redacted) events in seq order, from `after_seq` + 1, encrypted values opened:
    every reader of events reads through here or `events_before` (actors/crypto/event_fields)."""
    return await decrypt_event_rows(conn, session_id, await conn.fetch(
        "SELECT seq, type, ts, url, target::text AS target, payload::text AS payload"
        " FROM interactions WHERE session_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        session_id, after_seq, limit,
    ))


async def events_before(conn: Conn, session_id: uuid.UUID, seq: int, limit: int) -> list[asyncpg.Record]:
    """The `limit` events at or before `seq`, newest first: what a screenshot showed."""
    return await decrypt_event_rows(conn, session_id, await conn.fetch(
        "SELECT seq, type, ts, url, target::text AS target, payload::text AS payload"
        " FROM interactions WHERE session_id = $1 AND seq <= $2 ORDER BY seq DESC LIMIT $3",
        session_id, seq, limit,
    ))


async def screenshot_rows(conn: Conn, session_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT * FROM screenshots WHERE session_id = $1"
        " ORDER BY seq NULLS LAST, captured_at NULLS LAST, created_at, screenshot_id",
        session_id,
    )


async def pending_screenshots(conn: Conn, session_id: uuid.UUID) -> list[str]:
    rows = await conn.fetch(
        "SELECT screenshot_id FROM screenshots WHERE session_id = $1"
        " AND status IN ('received', 'processing') ORDER BY created_at",
        session_id,
    )
    return [r["screenshot_id"] for r in rows]


async def mark_screenshot_compressed(conn: Conn, session_id: uuid.UUID, screenshot_id: str,
                                     result: dict[str, Any]) -> bool:
    """received|processing → compressed, once; False when another attempt got there first."""
    done = await conn.fetchval(
        "UPDATE screenshots SET status = 'compressed', webp_key = $3, webp_bytes = $4,"
        " webp_width = $5, webp_height = $6, webp_sha256 = $7, phash = $8, boxes_painted = $9,"
        " local_vision = $10::jsonb, compressed_at = now(), error = NULL,"
        " attempts = attempts + 1"
        " WHERE session_id = $1 AND screenshot_id = $2 AND status <> 'compressed' RETURNING true",
        session_id, screenshot_id, result["webp_key"], result["webp_bytes"], result["width"],
        result["height"], result["webp_sha256"], result["phash"], result["boxes_painted"],
        json_dumps(result["local_vision"]),
    )
    return bool(done)


async def drop_raw_key(conn: Conn, session_id: uuid.UUID, screenshot_id: str) -> None:
    await conn.execute(
        "UPDATE screenshots SET raw_key = NULL WHERE session_id = $1 AND screenshot_id = $2",
        session_id, screenshot_id,
    )


async def mark_screenshot_failed(conn: Conn, session_id: uuid.UUID, screenshot_id: str, error: str) -> None:
    await conn.execute(
        "UPDATE screenshots SET status = 'failed', error = $3, attempts = attempts + 1"
        " WHERE session_id = $1 AND screenshot_id = $2 AND status <> 'compressed'",
        session_id, screenshot_id, error[:500],
    )


async def set_duplicates(conn: Conn, session_id: uuid.UUID, pairs: Sequence[tuple[str, str | None]]) -> None:
    """(screenshot_id, near_duplicate_of) for every compressed frame of the session."""
    await conn.executemany(
        "UPDATE screenshots SET near_duplicate_of = $3 WHERE session_id = $1 AND screenshot_id = $2",
        [(session_id, sid, dup) for sid, dup in pairs],
    )


async def add_privacy_counts(conn: Conn, session_id: uuid.UUID, source: str, counts: dict[str, int]) -> None:
    await conn.executemany(
        "INSERT INTO privacy_audit (session_id, source, kind, count) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (session_id, source, kind)"
        " DO UPDATE SET count = privacy_audit.count + EXCLUDED.count, updated_at = now()",
        [(session_id, source, kind, n) for kind, n in sorted(counts.items()) if n],
    )


# -- finalisation -----------------------------------------------------------------------

async def pending_finalizations(conn: Conn, limit: int = 1000) -> list[uuid.UUID]:
    rows = await conn.fetch(
        "SELECT session_id FROM sessions WHERE status = 'finalizing' AND deleted_at IS NULL"
        " ORDER BY updated_at LIMIT $1", limit
    )
    return [r["session_id"] for r in rows]


async def set_stage(conn: Conn, session_id: uuid.UUID, stage: str) -> None:
    """Progress: a restart resumes at this stage (each stage is idempotent, so repeating the
    interrupted one is safe). Moving on resets the failure count."""
    await conn.execute(
        "UPDATE sessions SET finalize_stage = $2, finalize_attempts = 0, finalize_error = NULL,"
        " updated_at = now() WHERE session_id = $1 AND status = 'finalizing'",
        session_id, stage,
    )


async def claim_finalize_attempt(conn: Conn, session_id: uuid.UUID, error: str) -> int:
    """Count one failed attempt at the current stage; returns the count so far."""
    n = await conn.fetchval(
        "UPDATE sessions SET finalize_attempts = finalize_attempts + 1, finalize_error = $2,"
        " updated_at = now() WHERE session_id = $1 AND status = 'finalizing'"
        " RETURNING finalize_attempts",
        session_id, error[:1000],
    )
    return int(n or 0)


async def mark_failed(conn: Conn, session_id: uuid.UUID, error: str) -> None:
    await conn.execute(
        "UPDATE sessions SET status = 'failed', finalize_error = $2, finalized_at = now(),"
        " updated_at = now() WHERE session_id = $1 AND status = 'finalizing'",
        session_id, error[:1000],
    )


async def finish_finalization(conn: Conn, session_id: uuid.UUID) -> str | None:
    """finalizing → ready | rejected, from the recorded quality verdict."""
    return await conn.fetchval(
        "UPDATE sessions SET status = CASE WHEN (analysis->>'rejected')::boolean"
        " THEN 'rejected' ELSE 'ready' END, finalize_stage = 'done', finalized_at = now(),"
        " finalize_error = NULL, updated_at = now()"
        " WHERE session_id = $1 AND status = 'finalizing' RETURNING status",
        session_id,
    )


async def record_analysis(conn: Conn, session_id: uuid.UUID, quality: dict[str, Any],
                          analysis: dict[str, Any]) -> None:
    await conn.execute(
        "UPDATE sessions SET completeness = $2, selector_reliability = $3, screenshot_quality = $4,"
        " training_value = $5, quality_overall = $6, quality_reasons = $7::jsonb,"
        " quality_suggestions = $8::jsonb, quality_parts = $9::jsonb, analysis = $10::jsonb,"
        " updated_at = now() WHERE session_id = $1",
        session_id, quality["completeness"], quality["selector_reliability"],
        quality["screenshot_quality"], quality["training_value"], quality["overall"],
        json_dumps(quality["reasons"]), json_dumps(quality["suggestions"]),
        json_dumps(quality["parts"]), json_dumps(analysis),
    )


async def record_archive(conn: Conn, session_id: uuid.UUID, key: str, sha256: str, size: int) -> None:
    await conn.execute(
        "UPDATE sessions SET archive_key = $2, archive_sha256 = $3, archive_bytes = $4,"
        " updated_at = now() WHERE session_id = $1",
        session_id, key, sha256, size,
    )


# -- vision ---------------------------------------------------------------------------------

async def vision_cache_get(conn: Conn, sha256: str, model: str, prompt_version: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT analysis::text AS analysis, tokens_in, tokens_out, cost_usd FROM vision_cache"
        " WHERE image_sha256 = $1 AND model = $2 AND prompt_version = $3",
        sha256, model, prompt_version,
    )


async def vision_cache_put(conn: Conn, sha256: str, model: str, prompt_version: str,
                           analysis: dict[str, Any], tokens_in: int, tokens_out: int, cost: float) -> None:
    await conn.execute(
        "INSERT INTO vision_cache (image_sha256, model, prompt_version, analysis, tokens_in,"
        " tokens_out, cost_usd) VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7) ON CONFLICT DO NOTHING",
        sha256, model, prompt_version, json_dumps(analysis), tokens_in, tokens_out, cost,
    )


async def vision_call(conn: Conn, row: dict[str, Any]) -> None:
    await conn.execute(
        "INSERT INTO vision_calls (session_id, screenshot_id, image_sha256, provider, model, outcome,"
        " fallback_reason, tokens_in, tokens_out, cost_usd, attempts, latency_ms)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        row["session_id"], row["screenshot_id"], row["image_sha256"], row["provider"], row.get("model"),
        row["outcome"], row.get("fallback_reason"), row.get("tokens_in", 0), row.get("tokens_out", 0),
        row.get("cost_usd", 0.0), row.get("attempts", 0), row.get("latency_ms"),
    )


async def record_vision(conn: Conn, session_id: uuid.UUID, screenshot_id: str,
                        vision: dict[str, Any] | None, source: str) -> None:
    await conn.execute(
        "UPDATE screenshots SET vision = $3::jsonb, vision_source = $4"
        " WHERE session_id = $1 AND screenshot_id = $2",
        session_id, screenshot_id, None if vision is None else json_dumps(vision), source,
    )
