"""The cards stage of finalisation: title, caption, contact sheet and sentiment of one session.

Runs in a Ray task after the analysis stage and before the archive (which includes the card).
Idempotent: it reads only stored data and overwrites what it wrote; a model reply comes from
the inference cache when the same request was made before, so a re-run makes no second call.
A failing or absent model leaves the local card (source "local", with the reason).
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from actors.batching.collector import batcher
from actors.cards.chat import ChatJson
from actors.cards.moments import key_moments, local_card, outcome_of, site_of
from actors.cards.sheet import pick_frames, render_sheet
from actors.context import ordered
from actors.errors import TracemillError
from actors.ingest.rows import as_event, jsonb
from actors.openai_client import provider_detail
from actors.processing.task_resources import TaskResources
from actors.sentiment.lexicon import typed_texts
from actors.sentiment.score import read_texts, summarize
from actors.storage import cards_repo
from actors.storage import processing_repo as repo
from configs.cards import CardSettings

__all__ = ["SYSTEM_PROMPT", "card_entries", "card_prompt", "check_card", "make_card", "sheet_key"]

log = logging.getLogger(__name__)
PROMPT_VERSION = "card-1"
SYSTEM_PROMPT = (
    "You write the card of a recorded web browsing session for a reviewer skimming thousands. "
    'Answer only with JSON: {"title": at most 8 words, "caption": exactly two sentences, at '
    "most 60 words: what the person did, and where it went wrong or right and how it ended}. "
    "Use only the facts given; bracketed placeholders are removed personal data."
)


def sheet_key(org_id: uuid.UUID, session_id: uuid.UUID) -> str:
    return f"screenshots/{org_id}/{session_id}/contact-sheet.webp"


def check_card(value: dict[str, Any]) -> dict[str, Any]:
    title, caption = value.get("title"), value.get("caption")
    if not isinstance(title, str) or not isinstance(caption, str):
        raise ValueError("title and caption must be strings")
    title, caption = " ".join(title.split()), " ".join(caption.split())
    if not (0 < len(title) <= 120 and 0 < len(caption) <= 600):
        raise ValueError("title or caption empty or too long")
    return {"title": title, "caption": caption}


def card_prompt(events: list[dict[str, Any]], analysis: dict[str, Any], moments: list[dict[str, Any]],
                task: str | None, sentiment: dict[str, Any]) -> str:
    """The facts the model is given: the same the local card is built from (stable key order,
    so the same session gives the same prompt and hits the cache)."""
    context = analysis.get("context") or {}
    facts = {
        "version": PROMPT_VERSION,
        "task": task,
        "site": site_of(ordered(events)),
        "intent_counts": context.get("intent_counts"),
        "navigation_pattern": context.get("navigation_pattern"),
        "shopping_style": context.get("shopping_style"),
        "pages": len(context.get("pages") or []),
        "key_moments": moments,
        "frustration": [{"kind": s.get("kind"), "step": (s.get("seqs") or [None])[0],
                         "target": s.get("target"), "message": s.get("message")}
                        for s in context.get("frustration") or []],
        "typed_text_sentiment": sentiment.get("label"),
        "outcome": outcome_of(analysis),
        "quality_reasons": (analysis.get("quality") or {}).get("reasons", [])[:4],
    }
    return json.dumps(facts, sort_keys=True, ensure_ascii=False)


async def _text(res: TaskResources, settings: CardSettings, events: list[dict[str, Any]],
                analysis: dict[str, Any], moments: list[dict[str, Any]], task: str | None,
                sentiment: dict[str, Any]) -> dict[str, Any]:
    local = local_card(events, analysis, moments, task)
    if settings.provider == "local":
        return local | {"source": "local", "reason": "no model configured"}
    chat = ChatJson(settings, kind="card", model=settings.model, max_tokens=settings.max_output_tokens)
    batching = res.settings.batching
    batched = None
    if batching.wants("card"):
        def batched(lines: dict[str, dict[str, Any]]) -> Any:
            return batcher(res.settings).submit.remote("card", "/v1/chat/completions", lines)
    try:
        reply = await chat.ask(res.pool, SYSTEM_PROMPT, card_prompt(events, analysis, moments, task, sentiment),
                               check_card, batched=batched, discount=batching.discount)
    except TracemillError as exc:
        reason = provider_detail(exc, "reason") or type(exc).__name__
        log.warning("card model failed, using the local card: %s", exc)
        return local | {"source": "local", "reason": f"model failed ({reason})"}
    finally:
        await chat.aclose()
    return reply.value | {"source": "model", "model": settings.model, "cached": reply.cached,
                          "batched": reply.batched, "tokens_in": reply.tokens_in, "tokens_out": reply.tokens_out}


async def _sheet(res: TaskResources, settings: CardSettings, session: Any, events: list[dict[str, Any]],
                 moments: list[dict[str, Any]]) -> dict[str, Any]:
    if settings.sheet_frames == 0:
        return {"sheet_key": None, "sheet_frames": []}
    shots = await repo.screenshot_rows(res.pool, session["session_id"])
    by_seq = {e["seq"]: e for e in events if isinstance(e.get("seq"), int)}
    frames = pick_frames(moments, by_seq, shots, settings.sheet_frames)
    if not frames:
        return {"sheet_key": None, "sheet_frames": []}
    images = [(f, await res.store.get(f.webp_key)) for f in frames]
    viewport = jsonb(session["viewport"]) or {}
    width = viewport.get("width") if isinstance(viewport, dict) else None
    data = render_sheet(images, float(width) if isinstance(width, (int, float)) and width > 0 else None, settings)
    key = sheet_key(session["org_id"], session["session_id"])
    await res.store.put(key, data, "image/webp")
    return {"sheet_key": key, "sheet_bytes": len(data),
            "sheet_frames": [{"screenshot_id": f.screenshot_id, "seq": f.seq, "boxed": f.box is not None}
                             for f in frames]}


async def make_card(res: TaskResources, session_id: uuid.UUID) -> dict[str, Any]:
    session = await repo.session_row(res.pool, session_id)
    if session is None:
        return {"status": "missing"}
    settings = res.settings.cards
    events = [as_event(r) for r in await repo.event_rows(res.pool, session_id)]
    analysis = jsonb(session["analysis"]) or {}
    texts = typed_texts(ordered(events), res.settings.sentiment)
    sentiment = summarize(texts, await read_texts([t.text for t in texts], res.settings.sentiment, res.pool))
    moments = key_moments(events, analysis, settings.max_moments)
    card = await _text(res, settings, events, analysis, moments, session["task"], sentiment)
    card |= {"moments": moments} | await _sheet(res, settings, session, events, moments)
    await cards_repo.record_card(res.pool, session_id, card, sentiment)
    return {"status": "carded", "source": card["source"], "frames": len(card["sheet_frames"]),
            "texts": sentiment["texts"]}


async def card_entries(res: TaskResources, session: Any) -> list[tuple[str, bytes]]:
    """The archive's files of the card: card.json (card and sentiment summary) and the sheet."""
    card = jsonb(session["card"])
    if not isinstance(card, dict):
        return []
    body = {"card": card, "sentiment": jsonb(session["sentiment"])}
    files = [("card.json", json.dumps(body, indent=2, sort_keys=True, ensure_ascii=False).encode())]
    if card.get("sheet_key"):
        files.append(("contact-sheet.webp", await res.store.get(card["sheet_key"])))
    return files
