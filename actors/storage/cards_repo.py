"""SQL of session cards and sentiment (migration 0015): the inference cache keyed by the
sha256 of a model prompt, and what the cards stage records on the session."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg

__all__ = ["cache_get", "cache_put", "cards_summary", "record_card", "sheet_key"]

Conn = asyncpg.Connection | asyncpg.Pool


async def cache_get(conn: Conn, prompt_sha256: str) -> dict[str, Any] | None:
    """The stored reply to exactly this prompt (model and every parameter included)."""
    raw = await conn.fetchval(
        "UPDATE inference_cache SET hits = hits + 1 WHERE prompt_sha256 = $1 RETURNING reply::text",
        prompt_sha256,
    )
    return json.loads(raw) if raw is not None else None


async def sheet_key(conn: Conn, session_id: uuid.UUID) -> str | None:
    """Where the session's contact sheet is stored (None before the cards stage or without one)."""
    key = await conn.fetchval("SELECT card->>'sheet_key' FROM sessions WHERE session_id = $1", session_id)
    return key if isinstance(key, str) and key else None


async def cache_put(conn: Conn, prompt_sha256: str, kind: str, model: str, reply: dict[str, Any],
                    tokens_in: int, tokens_out: int) -> None:
    await conn.execute(
        "INSERT INTO inference_cache (prompt_sha256, kind, model, reply, tokens_in, tokens_out)"
        " VALUES ($1, $2, $3, $4::jsonb, $5, $6) ON CONFLICT (prompt_sha256) DO NOTHING",
        prompt_sha256, kind, model, json.dumps(reply), tokens_in, tokens_out,
    )


async def record_card(conn: Conn, session_id: uuid.UUID, card: dict[str, Any],
                      sentiment: dict[str, Any]) -> None:
    await conn.execute(
        "UPDATE sessions SET card_title = $2, caption = $3, card = $4::jsonb,"
        " sentiment = $5::jsonb, sentiment_label = $6, sentiment_polarity = $7,"
        " updated_at = now() WHERE session_id = $1",
        session_id, card["title"], card["caption"], json.dumps(card), json.dumps(sentiment),
        sentiment.get("label"), sentiment.get("polarity"),
    )


async def cards_summary(conn: Conn, session_ids: list[uuid.UUID], sample: int = 20) -> dict[str, Any]:
    """A dataset report's view of its sessions' cards: how many have one and from where, their
    typed-text sentiment, and the first `sample` cards by session id (title and caption)."""
    row = await conn.fetchrow(
        "SELECT count(*) FILTER (WHERE card IS NOT NULL) AS carded,"
        " count(*) FILTER (WHERE card->>'source' = 'model') AS by_model,"
        " count(*) FILTER (WHERE card->>'source' = 'local') AS local,"
        " count(*) FILTER (WHERE sentiment_label = 'negative') AS negative,"
        " count(*) FILTER (WHERE sentiment_label = 'neutral') AS neutral,"
        " count(*) FILTER (WHERE sentiment_label = 'positive') AS positive,"
        " count(*) FILTER (WHERE sentiment_label IS NULL) AS no_text"
        " FROM sessions WHERE session_id = ANY($1::uuid[])", session_ids)
    cards = await conn.fetch(
        "SELECT session_id, card_title, caption, sentiment_label FROM sessions"
        " WHERE session_id = ANY($1::uuid[]) AND card IS NOT NULL ORDER BY session_id LIMIT $2",
        session_ids, sample)
    return {
        "carded": row["carded"], "by_source": {"model": row["by_model"], "local": row["local"]},
        "sentiment": {k: row[k] for k in ("negative", "neutral", "positive", "no_text")},
        "sample": [{"session_id": str(c["session_id"]), "title": c["card_title"], "caption": c["caption"],
                    "sentiment": c["sentiment_label"]} for c in cards],
    }
