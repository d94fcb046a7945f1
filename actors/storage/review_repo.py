"""Reviewers' flags (migration 0008): create, list, move along `pending → reviewed → resolved`,
and the review queue. Each change of a flag and the session's denormalised `review_state`
(the most open state of its flags: what the list filters on) are written in one transaction.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

import asyncpg

from actors.errors import Conflict, InvalidInput, NotFound
from actors.sentiment.lexicon import label_of, note_reading
from actors.storage.search_repo import ITEM_COLUMNS, item

__all__ = ["NEXT_STATE", "REASONS", "Reason", "FlagState", "create_flag", "flag_view", "flagged_steps",
           "flags_of_sessions", "list_flags", "move_flag", "review_queue"]

Reason = Literal["wrong_action", "off_task", "personal_data", "poor_quality", "other"]
REASONS: tuple[str, ...] = ("wrong_action", "off_task", "personal_data", "poor_quality", "other")
FlagState = Literal["pending", "reviewed", "resolved"]
# The one transition allowed into each state; anything else is a conflict (409).
NEXT_STATE: dict[str, str] = {"reviewed": "pending", "resolved": "reviewed"}

Conn = asyncpg.Pool | asyncpg.Connection
_FLAG_COLUMNS = ("flag_id, session_id, seq, reason, note, state, created_by, created_at,"
                 " reviewed_by, reviewed_at, resolved_by, resolved_at, note_polarity, note_confidence")

_REVIEW_STATE = """
UPDATE sessions SET review_state = coalesce((
    SELECT CASE WHEN bool_or(state = 'pending') THEN 'pending'
                WHEN bool_or(state = 'reviewed') THEN 'reviewed' ELSE 'resolved' END
    FROM review_flags WHERE session_id = $1), 'none')
WHERE session_id = $1
"""


def flag_view(row: Any) -> dict[str, Any]:
    out = {k: row[k] for k in ("seq", "reason", "note", "state")}
    for k in ("flag_id", "session_id", "created_by", "reviewed_by", "resolved_by"):
        out[k] = None if row[k] is None else str(row[k])
    for k in ("created_at", "reviewed_at", "resolved_at"):
        out[k] = None if row[k] is None else row[k].isoformat()
    # The note's sentiment by the lexicon (migration 0015, actors/sentiment), never a model.
    polarity = row["note_polarity"]
    out["note_sentiment"] = None if polarity is None else {
        "polarity": polarity, "confidence": row["note_confidence"], "label": label_of(polarity)}
    return out


async def create_flag(pool: asyncpg.Pool, org_id: uuid.UUID, session_id: uuid.UUID, *, seq: int | None,
                      reason: str, note: str | None, actor: uuid.UUID,
                      workspace_id: uuid.UUID | None = None) -> dict[str, Any]:
    """Flag a whole session (seq None) or one stored step. Another organisation's session is
    unknown (404); a seq the session did not store is invalid (422)."""
    async with pool.acquire() as conn, conn.transaction():
        # FOR SHARE: the session cannot be deleted under the flag, and review_state below
        # is written after every concurrent flag's insert of this session is visible.
        found = await conn.fetchval(
            "SELECT 1 FROM sessions WHERE session_id = $1 AND org_id = $2"
            " AND ($3::uuid IS NULL OR workspace_id = $3) AND deleted_at IS NULL FOR NO KEY UPDATE", session_id, org_id, workspace_id)
        if found is None:
            raise NotFound(f"no session {session_id}")
        if seq is not None and await conn.fetchval(
                "SELECT 1 FROM interactions WHERE session_id = $1 AND seq = $2", session_id, seq) is None:
            raise InvalidInput("invalid flag", [{"field": "seq", "error": f"session {session_id} has no event {seq}"}])
        row = await conn.fetchrow(
            "INSERT INTO review_flags (flag_id, org_id, session_id, seq, reason, note, created_by,"
            f" note_polarity, note_confidence) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {_FLAG_COLUMNS}",
            uuid.uuid4(), org_id, session_id, seq, reason, note, actor, *note_reading(note),
        )
        await conn.execute(_REVIEW_STATE, session_id)
    return flag_view(row)


async def list_flags(conn: Conn, org_id: uuid.UUID, session_id: uuid.UUID,
                     workspace_id: uuid.UUID | None = None) -> list[dict[str, Any]]:
    if await conn.fetchval("SELECT 1 FROM sessions WHERE session_id = $1 AND org_id = $2"
                           " AND ($3::uuid IS NULL OR workspace_id = $3) AND deleted_at IS NULL", session_id, org_id,
                           workspace_id) is None:
        raise NotFound(f"no session {session_id}")
    rows = await conn.fetch(
        f"SELECT {_FLAG_COLUMNS} FROM review_flags WHERE session_id = $1 AND org_id = $2"
        " ORDER BY created_at, flag_id", session_id, org_id)
    return [flag_view(r) for r in rows]


async def move_flag(pool: asyncpg.Pool, org_id: uuid.UUID, flag_id: uuid.UUID, *, state: str,
                    note: str | None, actor: uuid.UUID, workspace_id: uuid.UUID | None = None) -> dict[str, Any]:
    """pending → reviewed, reviewed → resolved; who and when are recorded. A note replaces the
    flag's note. Any other move is a conflict naming the flag's state."""
    stamp = "reviewed" if state == "reviewed" else "resolved"
    async with pool.acquire() as conn, conn.transaction():
        current = await conn.fetchrow(
            "SELECT session_id, state FROM review_flags WHERE flag_id = $1 AND org_id = $2"
            " AND ($3::uuid IS NULL OR workspace_id = $3) FOR UPDATE", flag_id, org_id, workspace_id)
        if current is None:
            raise NotFound(f"no flag {flag_id}")
        if NEXT_STATE.get(state) != current["state"]:
            raise Conflict(f"flag {flag_id} is {current['state']}; it cannot become {state}"
                           " (pending → reviewed → resolved)", code="invalid_transition",
                           details=[{"field": "state", "error": f"from {current['state']}"}])
        await conn.fetchval(
            "SELECT 1 FROM sessions WHERE session_id = $1 FOR NO KEY UPDATE", current["session_id"])
        row = await conn.fetchrow(
            f"UPDATE review_flags SET state = $2, {stamp}_by = $3, {stamp}_at = now(),"
            f" note = coalesce($4, note), note_polarity = CASE WHEN $4::text IS NULL THEN note_polarity ELSE $5 END,"
            f" note_confidence = CASE WHEN $4::text IS NULL THEN note_confidence ELSE $6 END"
            f" WHERE flag_id = $1 RETURNING {_FLAG_COLUMNS}",
            flag_id, state, actor, note, *note_reading(note))
        await conn.execute(_REVIEW_STATE, current["session_id"])
    return flag_view(row)


_QUEUE = f"""
SELECT {ITEM_COLUMNS}, f.pending, f.newest, f.reasons
FROM sessions s
LEFT JOIN LATERAL (
    SELECT count(*) AS pending, max(created_at) AS newest, array_agg(DISTINCT reason) AS reasons
    FROM review_flags WHERE session_id = s.session_id AND state = 'pending'
) f ON s.review_state = 'pending'
WHERE s.org_id = $1 AND ($4::uuid IS NULL OR s.workspace_id = $4) AND s.deleted_at IS NULL AND (
    s.review_state = 'pending'
    OR (s.review_state = 'none' AND s.status IN ('ready', 'rejected')
        AND (s.quality_overall < $2 OR s.frustration > 0)))
ORDER BY (s.review_state = 'pending') DESC, f.newest DESC NULLS LAST,
         s.frustration DESC, s.quality_overall ASC NULLS LAST, s.session_id
LIMIT $3
"""


async def review_queue(conn: Conn, org_id: uuid.UUID, *, quality_below: float, limit: int,
                       workspace_id: uuid.UUID | None = None) -> list[dict[str, Any]]:
    """What needs a look first: sessions with pending flags (newest flag first), then unreviewed
    finalised sessions with frustration signals (most first) or quality under `quality_below`
    (lowest first). Each item says why it is there."""
    rows = await conn.fetch(_QUEUE, org_id, quality_below, limit, workspace_id)
    out = []
    for r in rows:
        why = []
        if r["pending"]:
            why.append(f"{r['pending']} pending flag(s): {', '.join(sorted(r['reasons']))}")
        if r["frustration"]:
            why.append(f"{r['frustration']} frustration signal(s)")
        if r["quality_overall"] is not None and r["quality_overall"] < quality_below:
            why.append(f"quality {r['quality_overall']:.2f} < {quality_below:g}")
        out.append({**item(r), "why": why})
    return out


# -- dataset selection ------------------------------------------------------------------------
# A flag in any state keeps its session or step out of datasets built with exclude_flagged:
# a resolved flag records that a reviewer dealt with the problem, not that the data is good.

async def flags_of_sessions(conn: Conn, session_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[tuple[int | None, str]]]:
    """Every flag (seq, reason) of these sessions: seq None flags the whole session."""
    rows = await conn.fetch("SELECT session_id, seq, reason FROM review_flags WHERE session_id = ANY($1::uuid[])",
                            session_ids)
    out: dict[uuid.UUID, list[tuple[int | None, str]]] = {}
    for r in rows:
        out.setdefault(r["session_id"], []).append((r["seq"], r["reason"]))
    return out


async def flagged_steps(conn: Conn, session_id: uuid.UUID) -> frozenset[int]:
    """The seqs of the session's flagged steps."""
    rows = await conn.fetch("SELECT DISTINCT seq FROM review_flags WHERE session_id = $1 AND seq IS NOT NULL",
                            session_id)
    return frozenset(r["seq"] for r in rows)
