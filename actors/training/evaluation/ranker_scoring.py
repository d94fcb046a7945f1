"""How a ranker's answer is scored: the one place recall@k and a ranker's predicted action
are computed. Pure functions (no torch, no Ray, no database): the evaluation job, the model
server, the training loop's validation and `tracemill bench dataset-value` all call these.

A ranker (actors.training.ranker) answers a step with its candidates ordered best first and
an action type. As an action in the chat format's shape (actors.training.evaluation.compare)
that is:

* action        the action type, in the chat format's names (type -> input, key -> keypress)
* element       the top candidate: its selector and its description (the ranking format's
                candidate text) stand for `selector` and `element_text`, so `compare_step`
                judges a ranker's element exactly as it judges a chat model's
* value         the ranker has no text decoder; the value comes from a rule (`value_rule`):
                for input/select, the first quoted span of the task ("…", “…”, '…') not
                already typed in the recent actions; for keypress, Enter; for navigate, none
                (a URL is never guessed, so navigate's value is scored wrong)

The recorded action of a ranking row is built the same way from its positive candidate, so
the element is right exactly when the top candidate is the positive (or shares its selector).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from actors.training.evaluation.compare import StepResult, aggregate, compare_step

__all__ = ["CHAT_ACTIONS", "RANKING_KS", "VALUE_RULE", "positive_rank", "predicted_action",
           "ranker_metrics", "ranking_measures", "recorded_action", "score_all", "score_ranked",
           "value_rule"]

RANKING_KS = (1, 5, 10)
# The ranking format's action types in the chat format's names (formats._ACTIONS).
CHAT_ACTIONS = {"click": "click", "type": "input", "select": "select", "submit": "submit",
                "key": "keypress", "navigate": "navigate"}
VALUE_RULE = "task_span"  # how a ranker's value is made; named in answers and stored details
_QUOTED = re.compile(r'"([^"]{1,200})"|“([^”]{1,200})”|\'([^\']{1,200})\'')
_DEFAULT_KEY = "Enter"


def positive_rank(ranked_ids: Sequence[object], positive_id: object | None) -> int | None:
    """1-based position of the positive among the ranked ids (or slot indices); None when
    there is no positive (a navigate step) or it is not among them."""
    if positive_id is None:
        return None
    try:
        return list(ranked_ids).index(positive_id) + 1
    except ValueError:
        return None


def ranking_measures(ranks: Sequence[int | None], applicable: int | None = None,
                     ks: Sequence[int] = RANKING_KS) -> dict[str, Any]:
    """recall@k (the positive among the top k) and the mean reciprocal rank over the steps
    that have a positive (`applicable`, default: the ranks that are not None)."""
    n = applicable if applicable is not None else sum(r is not None for r in ranks)
    found = [r for r in ranks if r is not None]
    out: dict[str, Any] = {"ranked_steps": n}
    for k in ks:
        out[f"recall_at_{k}"] = sum(r <= k for r in found) / n if n else None
    out["mrr"] = sum(1.0 / r for r in found) / n if n else None
    return out


def _typed_values(previous_actions: Sequence[str]) -> set[str]:
    typed = set()
    for raw in previous_actions:
        try:
            action = json.loads(raw)
        except ValueError:
            continue
        if isinstance(action, Mapping) and action.get("value") is not None:
            typed.add(" ".join(str(action["value"]).split()))
    return typed


def value_rule(action_type: str, task: str, previous_actions: Sequence[str] = ()) -> str | None:
    """The value a ranker predicts (see the module docstring); None: it predicts none."""
    if action_type == "key":
        return _DEFAULT_KEY
    if action_type not in ("type", "select"):
        return None
    spans = [" ".join(next(g for g in m.groups() if g is not None).split()) for m in _QUOTED.finditer(task)]
    typed = _typed_values(previous_actions)
    return next((s for s in spans if s and s not in typed), spans[0] if spans else None)


def _value_field(action: str) -> str:
    return {"navigate": "url", "keypress": "key"}.get(action, "value")


def _element(candidate: Any) -> dict[str, Any]:
    get = candidate.get if isinstance(candidate, Mapping) else lambda k: getattr(candidate, k, None)
    return {k: v for k, v in (("selector", get("selector")), ("element_text", get("text"))) if v}


def predicted_action(action_type: str, top: Any, task: str,
                     previous_actions: Sequence[str] = ()) -> dict[str, Any]:
    """A ranker's answer as a chat-format action: its action type, its top candidate (a
    RankedCandidate or a dict with `selector`, `text`; None when it ranked none) and the value
    rule's value."""
    action = CHAT_ACTIONS[action_type]
    out: dict[str, Any] = {"action": action}
    if action != "navigate" and top is not None:
        out.update(_element(top))
    value = value_rule(action_type, task, previous_actions)
    if value is not None:
        out[_value_field(action)] = value
    return out


def recorded_action(row: Any) -> dict[str, Any]:
    """A ranking row's recorded step as a chat-format action (its positive as the element)."""
    action = CHAT_ACTIONS[row.action_type]
    out: dict[str, Any] = {"action": action}
    pos = row.positive_index
    if action != "navigate" and pos is not None:
        out.update(_element(row.candidates[pos]))
    if row.value is not None:
        out[_value_field(action)] = row.value
    return out


def score_ranked(row: Any, result: Any) -> tuple[StepResult, dict[str, Any], int | None]:
    """One ranking row against a ranker's RankResult: the evaluator's verdicts, the predicted
    action, and the positive's 1-based rank (None without a positive)."""
    top = result.candidates[0] if result.candidates else None
    predicted = predicted_action(result.action_type, top, row.task, row.previous_actions)
    pos = row.positive_index
    rank = positive_rank([c.id for c in result.candidates],
                         row.candidates[pos].id if pos is not None else None)
    return compare_step(recorded_action(row), predicted), predicted, rank


def score_all(rows: Sequence[Any], results: Sequence[Any]) -> tuple[list[tuple[StepResult, dict[str, Any], int | None]],
                                                                      dict[str, Any]]:
    """Every row scored (`score_ranked`), and the ranking measures over them."""
    scored = [score_ranked(row, res) for row, res in zip(rows, results, strict=True)]
    ranking = ranking_measures([rank for _, _, rank in scored], sum(row.positive_index is not None for row in rows))
    return scored, ranking


def ranker_metrics(rows: Sequence[Any], results: Sequence[Any]) -> dict[str, Any]:
    """The evaluator's measures (step, element, action-type, value accuracy, per action type)
    and the ranking measures (recall@1/5/10, MRR) of a ranker's answers to `rows`."""
    scored, ranking = score_all(rows, results)
    return {**aggregate(verdict for verdict, _, _ in scored), "ranking": ranking}
