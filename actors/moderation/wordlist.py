"""The offline fallback scorer: alt-profanity-check's linear model (a maintained package trained
on offensive-language corpora; no downloads) plus short phrase lists for the categories a
profanity model does not see. It is a floor, not a moderation model: see the README's
"Moderation" section for what it catches and what it misses.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from typing import Any

__all__ = ["CATEGORIES", "LOCAL_MODEL", "local_scores"]

CATEGORIES = ("toxicity", "harassment", "self_harm", "sexual", "violence")
LOCAL_MODEL = "alt-profanity-check-1.9+phrases"

# Phrases, not single words: "kill" alone is a game, a process, a price ("killer deal").
_PHRASES: dict[str, tuple[str, ...]] = {
    "self_harm": (r"kill (?:my|your)sel(?:f|ves)", r"\bsuicid", r"cut(?:ting)? (?:my|your)sel", r"end (?:my|your) life",
                  r"want to die", r"self[- ]harm"),
    "sexual": (r"\bporn", r"\bnude(?:s)?\b", r"\bsex(?:ual)? (?:act|video|chat)", r"\bxxx\b", r"\bnsfw\b"),
    "violence": (r"\b(?:i|we)(?:'ll| will| am going to| gonna) (?:kill|shoot|stab|hurt|beat)", r"\bbomb threat",
                 r"\bshoot (?:up|them|you)", r"\bbehead", r"\bmassacre"),
}
_COMPILED = {cat: re.compile("|".join(p), re.IGNORECASE) for cat, p in _PHRASES.items()}
_SECOND_PERSON = re.compile(r"\b(?:you|your|you're|u|ur)\b", re.IGNORECASE)
_PHRASE_SCORE = 0.9


@cache
def _model() -> Any:
    from profanity_check import predict_prob  # sklearn and the model load once per process

    return predict_prob


def local_scores(texts: Sequence[str]) -> list[dict[str, float]]:
    """A score in 0..1 per category for each text. Toxicity is the model's offensive-language
    probability; harassment is the same probability when the text addresses someone (you/your),
    half of it otherwise; the other categories are _PHRASE_SCORE when a phrase matches, else 0."""
    if not texts:
        return []
    probs = _model()(list(texts))
    out = []
    for text, p in zip(texts, probs, strict=True):
        tox = round(float(p), 4)
        scores = {"toxicity": tox,
                  "harassment": tox if _SECOND_PERSON.search(text) else round(tox / 2, 4)}
        for cat, pattern in _COMPILED.items():
            scores[cat] = _PHRASE_SCORE if pattern.search(text) else 0.0
        out.append(scores)
    return out
