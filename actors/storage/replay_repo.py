"""SQL of the session replay page: what the session page shows beside the events (which the
events route pages): the viewport, the context analysis and the screenshots' timeline."""

from __future__ import annotations

import uuid

import asyncpg

__all__ = ["replay_extras", "timeline"]

Conn = asyncpg.Connection | asyncpg.Pool


async def replay_extras(conn: Conn, session_id: uuid.UUID, org_id: uuid.UUID) -> asyncpg.Record | None:
    """viewport, analysis (jsonb as text) and quality_parts of the organisation's session."""
    return await conn.fetchrow(
        "SELECT viewport::text AS viewport, analysis::text AS analysis, quality_parts::text AS quality_parts,"
        " card::text AS card, sentiment::text AS sentiment"
        " FROM sessions WHERE session_id = $1 AND org_id = $2 AND deleted_at IS NULL",
        session_id, org_id,
    )


async def timeline(conn: Conn, session_id: uuid.UUID) -> list[asyncpg.Record]:
    """The screenshots in the order they were taken: the frames of the replay."""
    return await conn.fetch(
        "SELECT screenshot_id, seq, captured_at, trigger, status, width, height, webp_width, webp_height,"
        " near_duplicate_of FROM screenshots WHERE session_id = $1"
        " ORDER BY seq NULLS LAST, captured_at NULLS LAST, created_at, screenshot_id",
        session_id,
    )
