"""Moderate the sessions a dataset is about to use: the text of each action step (the page title,
the candidate elements' text, the typed value and the acted-on element's text: what the example
would hold) is scored once, the scores and decision are stored, and a step above its workspace's
warn threshold gets a pending review flag with reason `moderation` naming the category. Steps
above block are skipped by the chunks whatever `exclude_flagged` says (moderation_repo.blocked_steps).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from actors.ingest.rows import as_event
from actors import telemetry
from actors.batching.batch import run_batch
from actors.moderation.wordlist import LOCAL_MODEL, local_scores
from actors.moderation.moderator import Scored, Scorer, from_openai, top
from actors.storage import moderation_repo as repo
from actors.storage.processing_repo import event_rows
from actors.storage.review_repo import _REVIEW_STATE
from actors.training.dataset.formats import Step, action_steps, element_text
from configs.batching import BatchSettings
from configs.moderation import ModerationSettings

__all__ = ["MODERATOR", "GateStats", "decide", "moderate_sessions", "step_text"]

log = logging.getLogger(__name__)

# Who a moderation flag is created by: no key or account, the pipeline itself.
MODERATOR = uuid.uuid5(uuid.NAMESPACE_URL, "tracemill:moderation")


@dataclass
class GateStats:
    sessions: int = 0
    steps: int = 0
    flagged: int = 0
    batches: int = 0
    retried_lines: int = 0
    sources: dict[str, int] = field(default_factory=dict)
    fallbacks: dict[str, int] = field(default_factory=dict)  # why local answered instead

    def as_dict(self) -> dict[str, Any]:
        return {"sessions_scored": self.sessions, "steps_scored": self.steps, "flags_created": self.flagged,
                "steps_by_source": self.sources, "fallbacks": self.fallbacks, "batches": self.batches,
                "retried_lines": self.retried_lines}


def step_text(task: str, st: Step) -> str:
    """The words of a step that go into its training example (besides the fixed prompt): the
    task, the page title, the candidates' text, the last actions (so text typed or clicked
    earlier is scored again in every example that repeats it) and the action itself."""
    parts = [task, st.title, *(element_text(c) for c in st.candidates), *st.history,
             str(st.action.get("element_text") or ""), str(st.action.get("value") or "")]
    return "\n".join(p for p in parts if p)


def decide(score: float, warn: float, block: float) -> str:
    return "block" if score >= block else "warn" if score >= warn else "ok"


async def moderate_sessions(pool: asyncpg.Pool, settings: ModerationSettings, session_ids: list[uuid.UUID],
                            scorer: Scorer | None = None, batching: BatchSettings | None = None) -> GateStats:
    """Score every session of `session_ids` not scored yet; each session commits on its own.
    With batching on for moderation (and an openai provider) all their steps go in one batch job."""
    stats = GateStats()
    if not settings.enabled:
        return stats
    todo = await repo.unmoderated(pool, session_ids)
    if not todo:
        return stats
    own = scorer is None
    scorer = scorer or Scorer(settings)
    limits = await repo.thresholds_of(pool, [r["workspace_id"] for r in todo if r["workspace_id"]])
    default = (settings.default_warn, settings.default_block)
    try:
        texts = {row["session_id"]: await _texts(pool, row) for row in todo}
        batched = (batching is not None and batching.enabled and "moderation" in batching.kinds
                   and scorer.api is not None)
        scored = await _batched(pool, scorer, texts, batching, stats) if batched and batching else {}
        backlog = sum(len(t[1]) for t in texts.values())
        for row in todo:
            seqs, words = texts[row["session_id"]]
            telemetry.set_model_backlog("moderation", backlog)
            backlog -= len(words)
            result = scored.get(row["session_id"]) or (await scorer.score(words) if words else None)
            await _store(pool, row, seqs, result, limits.get(row["workspace_id"], default), stats)
    finally:
        telemetry.set_model_backlog("moderation", 0)
        if own:
            await scorer.aclose()
    log.info("moderation: %s", stats.as_dict())
    return stats


async def _texts(pool: asyncpg.Pool, row: Mapping[str, Any]) -> tuple[list[int], list[str]]:
    events = [as_event(r) for r in await event_rows(pool, row["session_id"])]
    steps = [st for st in action_steps({"session_id": str(row["session_id"])}, events) if isinstance(st.seq, int)]
    return [st.seq for st in steps], [step_text(str(row["task"] or ""), st) for st in steps]


async def _batched(pool: asyncpg.Pool, scorer: Scorer, texts: dict[uuid.UUID, tuple[list[int], list[str]]],
                   batching: BatchSettings, stats: GateStats) -> dict[uuid.UUID, Scored]:
    """Every step's text as one line of a Batch API job; lines still failed after the retries
    are scored locally (a Scored of mixed sources counts as local)."""
    assert scorer.api is not None
    model, cut = scorer.settings.model, scorer.settings.max_chars
    lines = {f"{sid}:{seq}": {"model": model, "input": [text[:cut]]}
             for sid, (seqs, words) in texts.items() for seq, text in zip(seqs, words, strict=True)}
    if not lines:
        return {}
    outcome = await run_batch(scorer.api, "moderation", "/v1/moderations", lines, batching, pool)
    stats.batches += len(outcome.batch_ids)
    stats.retried_lines += outcome.retried_lines
    out: dict[uuid.UUID, Scored] = {}
    for sid, (seqs, words) in texts.items():
        answers = [outcome.answers.get(f"{sid}:{seq}") for seq in seqs]
        scores: list[dict[str, float] | None] = [
            from_openai(a["results"][0]["category_scores"]) if a and a.get("results") else None for a in answers]
        missing = [i for i, sc in enumerate(scores) if sc is None]
        if missing:
            stats.fallbacks["batch_failed_lines"] = stats.fallbacks.get("batch_failed_lines", 0) + len(missing)
            for i, sc in zip(missing, local_scores([words[i][:cut] for i in missing]), strict=True):
                scores[i] = sc
        source, used = ("local", LOCAL_MODEL) if missing else ("openai", model)
        out[sid] = Scored([sc for sc in scores if sc is not None], source, used)
    return out


async def _store(pool: asyncpg.Pool, row: Mapping[str, Any], seqs: list[int], scored: Scored | None,
                 limits: tuple[float, float], stats: GateStats) -> None:
    sid = row["session_id"]
    rows = []
    for seq, scores in zip(seqs, scored.scores if scored else [], strict=True):
        cat, score = top(scores)
        rows.append((seq, scores, cat, score, decide(score, *limits)))
    source = scored.source if scored else "local"
    flags = [(seq, f"moderation: {cat} {score:.2f} ({decision}, {source})")
             for seq, _, cat, score, decision in rows if decision != "ok"]
    async with pool.acquire() as conn, conn.transaction():
        await conn.fetchval("SELECT 1 FROM sessions WHERE session_id = $1 FOR NO KEY UPDATE", sid)
        if await conn.fetchval("SELECT moderated_at FROM sessions WHERE session_id = $1", sid) is not None:
            return  # another build scored it meanwhile
        await repo.store_scores(conn, sid, rows, source, scored.model if scored else "")
        if flags:
            await conn.executemany(
                "INSERT INTO review_flags (flag_id, org_id, session_id, seq, reason, note, created_by)"
                " VALUES ($1, $2, $3, $4, 'moderation', $5, $6)",
                [(uuid.uuid4(), row["org_id"], sid, seq, note, MODERATOR) for seq, note in flags])
            await conn.execute(_REVIEW_STATE, sid)
    stats.sessions += 1
    stats.steps += len(rows)
    stats.flagged += len(flags)
    if scored:
        stats.sources[scored.source] = stats.sources.get(scored.source, 0) + len(rows)
        if scored.fallback_reason:
            stats.fallbacks[scored.fallback_reason] = stats.fallbacks.get(scored.fallback_reason, 0) + 1
