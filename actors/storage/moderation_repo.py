"""Moderation (migration 0016): per workspace thresholds, per step scores and decisions.
Only scores, categories and decisions are stored; never the text."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from typing import Any

import asyncpg

__all__ = ["blocked_steps", "blocked_summary", "get_thresholds", "set_thresholds", "store_scores",
           "thresholds_of", "unmoderated"]

Conn = asyncpg.Pool | asyncpg.Connection


async def get_thresholds(conn: Conn, org_id: uuid.UUID, workspace_id: uuid.UUID,
                         default: tuple[float, float]) -> dict[str, Any]:
    row = await conn.fetchrow("SELECT warn, block, updated_by, updated_at FROM moderation_thresholds"
                              " WHERE org_id = $1 AND workspace_id = $2", org_id, workspace_id)
    if row is None:
        return {"workspace_id": str(workspace_id), "warn": default[0], "block": default[1],
                "default": True, "updated_by": None, "updated_at": None}
    return {"workspace_id": str(workspace_id), "warn": row["warn"], "block": row["block"], "default": False,
            "updated_by": str(row["updated_by"]), "updated_at": row["updated_at"].isoformat()}


async def set_thresholds(conn: Conn, org_id: uuid.UUID, workspace_id: uuid.UUID, *, warn: float, block: float,
                         actor: uuid.UUID) -> None:
    await conn.execute(
        "INSERT INTO moderation_thresholds (org_id, workspace_id, warn, block, updated_by) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (org_id, workspace_id) DO UPDATE SET warn = $3, block = $4, updated_by = $5, updated_at = now()",
        org_id, workspace_id, warn, block, actor)


async def thresholds_of(conn: Conn, workspace_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, tuple[float, float]]:
    rows = await conn.fetch("SELECT workspace_id, warn, block FROM moderation_thresholds"
                            " WHERE workspace_id = ANY($1::uuid[])", list(set(workspace_ids)))
    return {r["workspace_id"]: (r["warn"], r["block"]) for r in rows}


async def unmoderated(conn: Conn, session_ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    """(session_id, org_id, workspace_id, task) of the sessions not scored yet."""
    return await conn.fetch("SELECT session_id, org_id, workspace_id, task FROM sessions"
                            " WHERE session_id = ANY($1::uuid[]) AND moderated_at IS NULL", session_ids)


async def store_scores(conn: asyncpg.Connection, session_id: uuid.UUID, rows: list[tuple[int, dict[str, float],
                       str, float, str]], source: str, model: str) -> None:
    """rows: (seq, scores, top category, top score, decision); marks the session moderated."""
    await conn.executemany(
        "INSERT INTO moderation_scores (session_id, seq, scores, category, score, decision, source, model)"
        " VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7, $8) ON CONFLICT (session_id, seq) DO NOTHING",
        [(session_id, seq, json.dumps(scores), cat, score, decision, source, model)
         for seq, scores, cat, score, decision in rows])
    await conn.execute("UPDATE sessions SET moderated_at = now() WHERE session_id = $1", session_id)


async def blocked_steps(conn: Conn, session_id: uuid.UUID) -> frozenset[int]:
    rows = await conn.fetch("SELECT seq FROM moderation_scores WHERE session_id = $1 AND decision = 'block'",
                            session_id)
    return frozenset(r["seq"] for r in rows)


async def blocked_summary(conn: Conn, session_ids: list[uuid.UUID]) -> dict[str, Any]:
    """What the report says: blocked steps and sessions, by category, and who scored them."""
    rows = await conn.fetch(
        "SELECT category, source, count(*) AS steps, count(DISTINCT session_id) AS sessions FROM moderation_scores"
        " WHERE session_id = ANY($1::uuid[]) AND decision = 'block' GROUP BY category, source", session_ids)
    warned = await conn.fetchval("SELECT count(*) FROM moderation_scores WHERE session_id = ANY($1::uuid[])"
                                 " AND decision = 'warn'", session_ids)
    by_cat: dict[str, int] = {}
    by_source: dict[str, int] = {}
    for r in rows:
        by_cat[r["category"]] = by_cat.get(r["category"], 0) + r["steps"]
        by_source[r["source"]] = by_source.get(r["source"], 0) + r["steps"]
    sessions = await conn.fetchval("SELECT count(DISTINCT session_id) FROM moderation_scores"
                                   " WHERE session_id = ANY($1::uuid[]) AND decision = 'block'", session_ids)
    return {"steps": sum(by_cat.values()), "sessions": sessions, "steps_by_category": by_cat,
            "steps_by_source": by_source, "warned_steps": warned}
