"""The `ranking` format of a web-agent dataset: one row per action step with the page's
candidate elements, the acted-on one marked positive. It is what the element ranker of a
two-stage web agent trains on (Mind2Web's MindAct, WebLINX): score every candidate against the
task, the URL/title and the last k actions, softmax over the step's candidates.

Rows come from the same steps as the `openai-chat` examples (`formats.action_steps`: the same
step extraction, candidate list, cap and best selector), so the two formats of one build always
describe the same steps. The hard negatives are the page's other candidates: the elements of the
latest `dom_snapshot` since the last navigation and the targets recently used on that page.
A `navigate` step has no target element, so none of its candidates is positive: it still
teaches the action-type head. Pure functions, no Ray, no database, no torch.

`ranking_rows(...)` returns pydantic `RankingRow`s; `train.ranking.jsonl` holds one
`row.model_dump(mode="json")` per line, and the Parquet export writes the same rows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from actors.context import target_key
from actors.training.dataset.formats import (
    Step,
    action_steps,
    best_selector,
    element_text,
    example_key,
)
from configs.dataset import DatasetFormatSettings
from configs.pipeline import SelectorRanks

__all__ = [
    "ACTION_TYPES", "ActionType", "RankingCandidate", "RankingRow", "RankingStatsAccumulator",
    "candidate_from_element", "content_digest", "dedupe_rows", "describe_element", "ranking_rows", "ranking_stats",
]

ActionType = Literal["click", "type", "select", "submit", "key", "navigate"]
# The action-type head's classes, in this order (a model's label index is its position here).
ACTION_TYPES: tuple[ActionType, ...] = ("click", "type", "select", "submit", "key", "navigate")
_ACTION_TYPE: dict[str, ActionType] = {
    "click": "click", "dblclick": "click", "input": "type", "select": "select",
    "submit": "submit", "keypress": "key", "navigate": "navigate"}
# Attributes that say what an element is for, in the order they are worth the ranker's tokens.
_KEY_ATTRIBUTES = ("type", "name", "role", "aria-label", "placeholder", "title", "alt", "value",
                   "href", "id", "data-testid")
_ATTRIBUTE_CHARS = 40


class RankingCandidate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(..., min_length=1, description="stable within a session: a hash of the element")
    text: str = Field(..., description="compact description: tag, text, key attributes, selector")
    selector: str | None = Field(None, description="the element's best selector, kind=value")
    positive: bool = False


class RankingRow(BaseModel):
    """One action step: the query (task, page, recent actions) and its candidate elements."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    session_id: str
    step_index: int = Field(..., ge=0)
    task: str
    url: str
    title: str
    previous_actions: list[str] = Field(default_factory=list, description="last k, oldest first")
    action_type: ActionType
    value: str | None = Field(None, description="typed/selected value, key name or URL")
    candidates: list[RankingCandidate]
    screenshot: str | None = Field(None, description="object-store key of the latest frame")

    @property
    def positive_index(self) -> int | None:
        return next((i for i, c in enumerate(self.candidates) if c.positive), None)


def _attribute(value: Any) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= _ATTRIBUTE_CHARS else text[:_ATTRIBUTE_CHARS - 1] + "…"


def describe_element(el: Mapping[str, Any], ranks: SelectorRanks | None = None) -> str:
    """`<tag> "text" key=value … selector`: what the ranker reads of one element."""
    attrs = el.get("attributes") if isinstance(el.get("attributes"), Mapping) else {}
    parts = [f"<{str(el.get('tag') or '?').lower()}>"]
    if text := element_text(el):
        parts.append(json.dumps(text, ensure_ascii=False))
    parts += [f"{k}={_attribute(attrs[k])}" for k in _KEY_ATTRIBUTES
              if attrs.get(k) not in (None, "") and _attribute(attrs[k]) != text]
    if selector := best_selector(el, ranks):
        parts.append(selector)
    return " ".join(parts)


def _element_id(el: Mapping[str, Any]) -> str:
    return hashlib.sha256(str(target_key(el)).encode()).hexdigest()[:12]


def candidate_from_element(el: Mapping[str, Any], ranks: SelectorRanks | None = None,
                           positive: bool = False) -> RankingCandidate:
    """A recorded element (PROTOCOL's element shape) as a ranking candidate; what a caller
    with raw page elements (serving, evaluation) turns them into before `Ranker.rank`."""
    return RankingCandidate(id=_element_id(el), text=describe_element(el, ranks),
                            selector=best_selector(el, ranks), positive=positive)


def _value(action: Mapping[str, Any]) -> str | None:
    for key in ("value", "key", "url"):
        if action.get(key) is not None:
            return str(action[key])
    return None


def _row(session_id: str, task: str, index: int, step: Step, screenshot: str | None,
         ranks: SelectorRanks) -> RankingRow:
    positive = target_key(step.target) if step.target is not None else None
    candidates = [candidate_from_element(el, ranks, positive is not None and target_key(el) == positive)
                  for el in step.candidates]
    return RankingRow(session_id=session_id, step_index=index, task=task, url=step.url,
                      title=step.title, previous_actions=list(step.history),
                      action_type=_ACTION_TYPE[str(step.action["action"])], value=_value(step.action),
                      candidates=candidates, screenshot=screenshot)


def ranking_rows(session: Mapping[str, Any], events: Sequence[dict],
                 screenshots: Mapping[int, str] | None = None,
                 settings: DatasetFormatSettings | None = None) -> list[RankingRow]:
    """One RankingRow per action step of the session, in seq order. `events` are PROTOCOL
    event dicts; `screenshots` maps a screenshot event's seq to its object-store key (the row
    names the latest at or before the step)."""
    s = settings or DatasetFormatSettings()
    shots = sorted((screenshots or {}).items())
    sid, task = str(session.get("session_id") or ""), str(session.get("task") or "")
    rows = []
    for index, step in enumerate(action_steps(session, events, s)):
        seq = step.seq if isinstance(step.seq, int) else -1
        shot = next((key for at, key in reversed(shots) if at <= seq), None)
        rows.append(_row(sid, task, index, step, shot, s.selector_ranks))
    return rows


def _content_key(row: RankingRow) -> str:
    """Equal steps of different sessions have equal keys (session, index, frame left out)."""
    return example_key(row.model_dump(mode="json", exclude={"session_id", "step_index", "screenshot"}))


def dedupe_rows(rows: Iterable[RankingRow], seen: set[str] | None = None) -> tuple[list[RankingRow], int]:
    """Rows whose step content was seen before dropped (e.g. validation copies of train steps,
    which would otherwise leak); returns (kept, dropped)."""
    seen = set() if seen is None else seen
    kept, dropped = [], 0
    for row in rows:
        if (key := _content_key(row)) in seen:
            dropped += 1
        else:
            seen.add(key)
            kept.append(row)
    return kept, dropped


def content_digest(row: RankingRow) -> bytes:
    """sha256 of the row's step content (what `dedupe_rows` compares), as 32 bytes."""
    return bytes.fromhex(_content_key(row))


class RankingStatsAccumulator:
    """`ranking_stats` fed one row's (has a positive, candidates) at a time."""

    def __init__(self) -> None:
        self.rows = self.with_positive = self.candidates_total = self.candidates_max = 0

    def add(self, has_positive: bool, n_candidates: int) -> None:
        self.rows += 1
        self.with_positive += has_positive
        self.candidates_total += n_candidates
        self.candidates_max = max(self.candidates_max, n_candidates)

    def result(self) -> dict[str, Any]:
        return {"rows": self.rows, "rows_with_positive": self.with_positive,
                "candidates_mean": self.candidates_total / self.rows if self.rows else 0.0,
                "candidates_max": self.candidates_max}


def ranking_stats(rows: Sequence[RankingRow]) -> dict[str, Any]:
    """Counts a trainer checks before any work: rows, rows with a positive, candidates."""
    acc = RankingStatsAccumulator()
    for r in rows:
        acc.add(r.positive_index is not None, len(r.candidates))
    return acc.result()
