"""Readings of a session's typed texts (or a reviewer's note) and the session's summary.

provider "local": the VADER lexicon. provider "openai": the chat model through the one OpenAI
layer, each text's reply cached by the sha256 of its request; when the model fails, the
lexicon's reading stands in, and a reading that cannot be made at all is neutral.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

import asyncpg

from actors.cards.chat import ChatJson
from actors.errors import TracemillError
from actors.sentiment.lexicon import Reading, TypedText, label_of, lexicon_reading
from configs.cards import SentimentSettings

__all__ = ["SYSTEM_PROMPT", "check_reading", "read_texts", "summarize"]

log = logging.getLogger(__name__)
SYSTEM_PROMPT = (
    "Rate the sentiment of the text a person typed into a web page. Answer only with JSON: "
    '{"polarity": number from -1 (very negative) to 1 (very positive), "confidence": number '
    "from 0 to 1}. Placeholders in brackets are removed personal data; ignore them."
)


def check_reading(value: dict[str, Any]) -> dict[str, Any]:
    polarity, confidence = value.get("polarity"), value.get("confidence")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (polarity, confidence)):
        raise ValueError("polarity and confidence must be numbers")
    if not (-1 <= polarity <= 1 and 0 <= confidence <= 1):  # type: ignore[operator]
        raise ValueError("out of range")
    return {"polarity": round(float(polarity), 4), "confidence": round(float(confidence), 4)}  # type: ignore[arg-type]


async def read_texts(texts: Sequence[str], settings: SentimentSettings,
                     pool: asyncpg.Pool | None) -> list[Reading]:
    if settings.provider == "local" or pool is None or not texts:
        return [lexicon_reading(t) for t in texts]
    chat = ChatJson(settings, kind="sentiment", model=settings.model, max_tokens=40)
    readings: list[Reading] = []
    try:
        for text in texts:
            try:
                reply = await chat.ask(pool, SYSTEM_PROMPT, text, check_reading)
            except TracemillError as exc:
                log.warning("sentiment model failed, using the lexicon: %s", exc)
                readings.append(lexicon_reading(text))
                continue
            p = reply.value["polarity"]
            readings.append(Reading(polarity=p, confidence=reply.value["confidence"],
                                    label=label_of(p), source="model"))
    finally:
        await chat.aclose()
    return readings


def summarize(texts: Sequence[TypedText], readings: Sequence[Reading]) -> dict[str, Any]:
    """The session's sentiment: the confidence-weighted mean polarity of its texts, counts by
    label, and each text's reading by seq and field kind (never the text). No texts: label null."""
    counts = Counter(r.label for r in readings)
    weight = sum(r.confidence for r in readings)
    polarity = (sum(r.polarity * r.confidence for r in readings) / weight) if weight else 0.0
    items = [{"seq": t.seq, "kind": t.kind, "polarity": r.polarity, "confidence": r.confidence,
              "label": r.label, "source": r.source} for t, r in zip(texts, readings)]
    return {
        "texts": len(readings),
        "label": label_of(polarity) if readings else None,
        "polarity": round(polarity, 4) if readings else None,
        "confidence": round(weight / len(readings), 4) if readings else None,
        "negative": counts["negative"], "neutral": counts["neutral"], "positive": counts["positive"],
        "items": items,
    }
