"""Which typed values are free text worth a sentiment, and the VADER lexicon's reading of one.

Only the stored (redacted) values are read: the redactor's placeholders ("[EMAIL]") are taken
out before scoring, so they neither count as words nor carry a mood. A field counts by its
kind: search boxes, text areas and editable regions always (one word is enough: "broken"),
plain text inputs only with `min_words` words; typed fields (password, email, number, date…)
and fields whose autocomplete names structured data (name, address, card) never do. A field
edited many times counts once, with its last value: keystrokes are not opinions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from configs.cards import SentimentSettings

__all__ = ["Reading", "TypedText", "field_kind", "label_of", "lexicon_reading", "note_reading", "typed_texts"]

Label = Literal["negative", "neutral", "positive"]
# VADER's own thresholds on its compound score (Hutto & Gilbert 2014, the package README).
NEUTRAL_BAND = 0.05
_PLACEHOLDER = re.compile(r"\[[A-Z][A-Z0-9_]*\]")
_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)
_TEXT_TYPES = frozenset({"", "text", "search"})
_SEARCHY = re.compile(r"search|query|\bq\b|keyword")
_FREE_TEXT = re.compile(r"message|comment|review|feedback|note|question|describe|description"
                        r"|subject|body|reason|story")


class Reading(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    polarity: float = Field(ge=-1, le=1)
    confidence: float = Field(ge=0, le=1)
    label: Label
    source: Literal["lexicon", "model", "neutral"]


class TypedText(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    seq: int
    kind: Literal["search", "message", "text"]
    text: str  # redacted, placeholders removed; never stored outside the event itself


def label_of(polarity: float) -> Label:
    if polarity >= NEUTRAL_BAND:
        return "positive"
    return "negative" if polarity <= -NEUTRAL_BAND else "neutral"


def _attrs(target: Mapping[str, Any]) -> dict[str, str]:
    raw = target.get("attributes")
    items = raw.items() if isinstance(raw, Mapping) else ()
    return {str(k).lower(): str(v).lower() for k, v in items if v is not None}


def field_kind(target: Mapping[str, Any] | None) -> Literal["search", "message", "text"] | None:
    """What a typed-into element is for, or None when its values are not free text."""
    if not isinstance(target, Mapping):
        return None
    tag, a = str(target.get("tag") or "").lower(), _attrs(target)
    autocomplete = a.get("autocomplete", "")
    if autocomplete not in ("", "on", "off"):
        return None  # name, street-address, cc-number, email…: structured data
    words = " ".join(a.get(k, "") for k in ("name", "id", "aria-label", "placeholder"))
    if tag == "textarea" or a.get("contenteditable") in ("", "true") and tag != "input" \
            or a.get("role") == "textbox" and tag != "input":
        return "message"
    if tag != "input" or a.get("type", "") not in _TEXT_TYPES:
        return None
    if a.get("type") == "search" or a.get("role") == "searchbox" or _SEARCHY.search(words):
        return "search"
    return "message" if _FREE_TEXT.search(words) else "text"


def typed_texts(events: Iterable[Mapping[str, Any]], settings: SentimentSettings) -> list[TypedText]:
    """The last value of each free-text field, in the order the fields were last edited."""
    last: dict[str, TypedText] = {}
    for event in events:
        if event.get("type") not in ("input", "change") or event.get("masked"):
            continue
        value, target = event.get("value"), event.get("target")
        kind = field_kind(target)
        if kind is None or not isinstance(value, str) or not isinstance(event.get("seq"), int):
            continue
        text = " ".join(_PLACEHOLDER.sub(" ", value).split())[: settings.max_chars]
        if len(text) < settings.min_chars or not _LETTER.search(text):
            continue
        if kind == "text" and len(text.split()) < settings.min_words:
            continue
        key = _field_key(target)
        last.pop(key, None)  # re-inserted: dict order follows the last edit
        last[key] = TypedText(seq=event["seq"], kind=kind, text=text)
    return list(last.values())[-settings.max_texts:]


def _field_key(target: Any) -> str:
    a = _attrs(target) if isinstance(target, Mapping) else {}
    sels = target.get("selectors") if isinstance(target, Mapping) else None
    first = sels[0].get("value", "") if isinstance(sels, list) and sels and isinstance(sels[0], Mapping) else ""
    return "|".join((str(first), a.get("id", ""), a.get("name", ""), a.get("placeholder", "")))


@lru_cache(maxsize=1)
def _analyser() -> Any:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def lexicon_reading(text: str) -> Reading:
    """VADER's compound score as polarity; confidence is the share of the text that carried
    the mood (pos + neg), or the neutral share for a neutral text. Neutral if it fails."""
    try:
        scores = _analyser().polarity_scores(text)
    except Exception:  # noqa: BLE001 - a lexicon hiccup must not stop finalisation
        return Reading(polarity=0.0, confidence=0.0, label="neutral", source="neutral")
    polarity = max(-1.0, min(1.0, float(scores["compound"])))
    label = label_of(polarity)
    share = scores["neu"] if label == "neutral" else scores["pos"] + scores["neg"]
    return Reading(polarity=round(polarity, 4), confidence=round(min(1.0, float(share)), 4),
                   label=label, source="lexicon")


def note_reading(note: str | None) -> tuple[float | None, float | None]:
    """(polarity, confidence) of a reviewer's flag note by the lexicon; (None, None) without a
    note. Written with the note, so a read never recomputes it."""
    if not note or not _LETTER.search(note):
        return None, None
    reading = lexicon_reading(" ".join(_PLACEHOLDER.sub(" ", note).split()))
    return reading.polarity, reading.confidence
