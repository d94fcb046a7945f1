"""What the model calls of one workspace used and cost, per kind, for the dashboard's backlog
panel (issue 19.4), from what the pipeline stores anyway: `vision_calls` (each call's tokens and
cost, batch lines at the batch price), the model-written cards (`sessions.card`: tokens, and
whether it came from a batch), the steps moderation scored by the provider (free on OpenAI), and
the batches not finished yet (`model_batches`, which names no workspace: the cluster's queue).
Cached answers are not calls and count nothing.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

__all__ = ["KINDS", "model_usage"]

KINDS = ("vision", "card", "moderation")

_VISION = """
SELECT count(*) FILTER (WHERE v.outcome = 'ok') AS calls,
       coalesce(sum(v.tokens_in), 0) AS tokens_in, coalesce(sum(v.tokens_out), 0) AS tokens_out,
       coalesce(sum(v.cost_usd), 0) AS cost_usd
  FROM vision_calls v JOIN sessions s USING (session_id)
 WHERE s.workspace_id = $1 AND s.deleted_at IS NULL"""
_CARDS = """
SELECT coalesce((card->>'batched')::boolean, false) AS batched, count(*) AS calls,
       coalesce(sum((card->>'tokens_in')::bigint), 0) AS tokens_in,
       coalesce(sum((card->>'tokens_out')::bigint), 0) AS tokens_out
  FROM sessions
 WHERE workspace_id = $1 AND deleted_at IS NULL AND card->>'source' = 'model'
   AND NOT coalesce((card->>'cached')::boolean, false)
 GROUP BY 1"""
_MODERATION = """
SELECT count(*) AS calls FROM moderation_scores m JOIN sessions s USING (session_id)
 WHERE s.workspace_id = $1 AND s.deleted_at IS NULL AND m.source = 'openai'"""
_QUEUED = """
SELECT kind, count(*) AS batches, coalesce(sum(lines), 0) AS lines
  FROM model_batches WHERE finished_at IS NULL GROUP BY kind"""


async def model_usage(pool: asyncpg.Pool, workspace_id: uuid.UUID, card_prices: tuple[float, float],
                      batch_discount: float) -> list[dict[str, Any]]:
    """One row per kind: calls, batch lines, tokens in and out, estimated USD, and the lines
    waiting in unfinished batches. `card_prices`: USD per million input and output tokens."""
    async with pool.acquire() as conn:
        vision = await conn.fetchrow(_VISION, workspace_id)
        cards = await conn.fetch(_CARDS, workspace_id)
        moderated = await conn.fetchval(_MODERATION, workspace_id)
        queued = {r["kind"]: r for r in await conn.fetch(_QUEUED)}
    rows: dict[str, dict[str, Any]] = {k: {"kind": k, "calls": 0, "batch_lines": 0, "tokens_in": 0, "tokens_out": 0,
                                           "cost_usd": 0.0} for k in KINDS}
    rows["vision"].update(calls=int(vision["calls"]), tokens_in=int(vision["tokens_in"]),
                          tokens_out=int(vision["tokens_out"]), cost_usd=float(vision["cost_usd"]))
    for r in cards:
        card = rows["card"]
        card["calls"] += int(r["calls"])
        card["batch_lines"] += int(r["calls"]) if r["batched"] else 0
        card["tokens_in"] += int(r["tokens_in"])
        card["tokens_out"] += int(r["tokens_out"])
        price = (int(r["tokens_in"]) * card_prices[0] + int(r["tokens_out"]) * card_prices[1]) / 1e6
        card["cost_usd"] += price * (batch_discount if r["batched"] else 1.0)
    rows["moderation"]["calls"] = int(moderated or 0)
    for kind, row in rows.items():
        q = queued.get(kind)
        row["queued_lines"] = int(q["lines"]) if q else 0
        row["open_batches"] = int(q["batches"]) if q else 0
        row["cost_usd"] = round(row["cost_usd"], 6)
    return list(rows.values())
