"""The element ranker: one transformer encoder, two small heads.

* score head   a cross-encoder: `query [SEP] candidate` through the encoder, mean-pooled, one
               linear unit. A step's candidates are softmaxed against each other and trained
               with the positive as the label (MindAct's and WebLINX's ranker objective).
* action head  the query alone, mean-pooled, beside the candidates' pooled vectors weighted by
               the ranker's own softmax (what the step seems to act on), to 6 action types.

The query is the task, the page (title, URL) and the last k actions. A checkpoint directory
holds `encoder/` (transformers weights, config and tokenizer), `heads.pt`, `ranker.json` and,
for resuming, `train_state.pt`. torch and transformers load here (the `train` extra).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actors.errors import ConfigError

# Never reach a model hub: weights and tokenizers come from local directories only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
try:
    import torch
    import torch.nn.functional as F
    from torch import nn
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging
except ImportError:  # pragma: no cover - exercised only without the extra
    raise ConfigError("the local ranker needs the train extra: pip install 'tracemill[train]'") from None

from actors.training.dataset.ranking import ACTION_TYPES, RankingRow

__all__ = ["FORMAT_VERSION", "Batch", "Featurizer", "RankerModel", "load_model", "query_text",
           "ranking_loss", "save_model"]

FORMAT_VERSION = 1
_NEG = -1e4  # the score of a padding slot: exp() of it is 0 in float32
hf_logging.set_verbosity_error()  # "some weights unused (pooler)": expected, not news
hf_logging.disable_progress_bar()  # per-shard bars in every worker's log say nothing


def query_text(task: str, url: str, title: str, previous_actions: Sequence[str]) -> str:
    history = " ; ".join(previous_actions) if previous_actions else "none"
    return f"task: {task or 'none'} | page: {title or 'none'} {url or ''} | previous: {history}"


@dataclass
class Batch:
    """Token tensors of B steps: their queries, and all their candidates flattened (pair_step,
    pair_slot say which step and which slot each pair belongs to)."""

    query: dict[str, torch.Tensor]
    pairs: dict[str, torch.Tensor]
    pair_step: torch.Tensor
    pair_slot: torch.Tensor
    slots: int
    positive: torch.Tensor  # [B], -1: no positive among the candidates
    action: torch.Tensor  # [B], index into ACTION_TYPES


class Featurizer:
    def __init__(self, tokenizer: Any, max_length: int, max_candidates: int | None = None) -> None:
        self.tokenizer, self.max_length, self.max_candidates = tokenizer, max_length, max_candidates

    def batch(self, rows: Sequence[RankingRow]) -> Batch:
        queries = [query_text(r.task, r.url, r.title, r.previous_actions) for r in rows]
        cands = [_capped(r, self.max_candidates) for r in rows]
        pair_q, pair_c, step, slot = [], [], [], []
        for i, (q, cs) in enumerate(zip(queries, cands)):
            for j, c in enumerate(cs):
                pair_q.append(q)
                pair_c.append(c.text)
                step.append(i)
                slot.append(j)
        positive = [next((j for j, c in enumerate(cs) if c.positive), -1) for cs in cands]
        return Batch(
            query=self._tokens(queries), pairs=self._tokens(pair_q, pair_c),
            pair_step=torch.tensor(step, dtype=torch.long), pair_slot=torch.tensor(slot, dtype=torch.long),
            slots=max((len(cs) for cs in cands), default=0),
            positive=torch.tensor(positive, dtype=torch.long),
            action=torch.tensor([ACTION_TYPES.index(r.action_type) for r in rows], dtype=torch.long))

    def _tokens(self, first: list[str], second: list[str] | None = None) -> dict[str, torch.Tensor]:
        if not first:
            return {}
        # Query and candidate share the budget; the longer one is cut first, so a long history
        # never pushes the candidate out.
        enc = self.tokenizer(first, second, truncation=True, max_length=self.max_length,
                             padding=True, return_tensors="pt")
        return {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


def _capped(row: RankingRow, cap: int | None) -> list[Any]:
    """At most `cap` candidates, the positive always among them (a build's cap may be larger
    than the trainer's)."""
    cands = list(row.candidates)
    if cap is None or len(cands) <= cap:
        return cands
    pos = row.positive_index
    if pos is None or pos < cap:
        return cands[:cap]
    return [*cands[:cap - 1], cands[pos]]


def _mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-6)


class RankerModel(nn.Module):
    def __init__(self, encoder_dir: Path) -> None:
        super().__init__()
        # No pooler: it would be an unused parameter under DDP (mean pooling is used instead).
        self.encoder = AutoModel.from_pretrained(str(encoder_dir), local_files_only=True,
                                                 add_pooling_layer=False)
        hidden = int(self.encoder.config.hidden_size)
        self.score = nn.Linear(hidden, 1)
        self.action = nn.Linear(2 * hidden, len(ACTION_TYPES))

    def _embed(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.encoder(**tokens)
        return _mean_pool(out.last_hidden_state, tokens["attention_mask"])

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores [B, slots] with padding at -1e4, action logits [B, 6])."""
        query = self._embed(batch.query)
        n = query.shape[0]
        scores = query.new_full((n, max(batch.slots, 1)), _NEG)
        context = torch.zeros_like(query)
        if batch.pair_step.numel():
            pairs = self._embed(batch.pairs)
            scores = scores.index_put((batch.pair_step, batch.pair_slot), self.score(pairs).squeeze(-1))
            weights = torch.softmax(scores, dim=-1)[batch.pair_step, batch.pair_slot].unsqueeze(-1)
            context = context.index_add(0, batch.pair_step, weights * pairs)
        return scores, self.action(torch.cat([query, context], dim=-1))

    def to_device(self, batch: Batch, device: torch.device) -> Batch:
        move = lambda d: {k: v.to(device) for k, v in d.items()}  # noqa: E731
        return Batch(move(batch.query), move(batch.pairs), batch.pair_step.to(device),
                     batch.pair_slot.to(device), batch.slots, batch.positive.to(device),
                     batch.action.to(device))


def ranking_loss(scores: torch.Tensor, action_logits: torch.Tensor,
                 batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
    """Softmax cross-entropy over each step's candidates (steps with a positive) plus the
    action-type cross-entropy; the parts as floats for the log."""
    has_positive = batch.positive >= 0
    rank = (F.cross_entropy(scores[has_positive], batch.positive[has_positive])
            if bool(has_positive.any()) else scores.sum() * 0.0)
    action = F.cross_entropy(action_logits, batch.action)
    return rank + action, {"rank_loss": float(rank.detach()), "action_loss": float(action.detach())}


def save_model(model: RankerModel, tokenizer: Any, directory: Path, meta: dict[str, Any]) -> None:
    encoder_dir = directory / "encoder"
    model.encoder.save_pretrained(str(encoder_dir))
    tokenizer.save_pretrained(str(encoder_dir))
    torch.save({"score": model.score.state_dict(), "action": model.action.state_dict()}, directory / "heads.pt")
    (directory / "ranker.json").write_text(json.dumps(
        {"format_version": FORMAT_VERSION, "action_types": list(ACTION_TYPES), **meta}, indent=2, sort_keys=True))


def load_model(directory: Path) -> tuple[RankerModel, Any, dict[str, Any]]:
    """(model, tokenizer, ranker.json) of a checkpoint directory, or of a bare encoder directory
    (the untrained base: fresh heads, seeded, so two loads agree)."""
    meta_path = directory / "ranker.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if meta and meta.get("format_version") != FORMAT_VERSION:
        raise ConfigError(f"{directory}: ranker format {meta.get('format_version')}, this code reads {FORMAT_VERSION}")
    encoder_dir = directory / "encoder" if meta else directory
    torch.manual_seed(int(meta.get("seed", 0)))
    model = RankerModel(encoder_dir)
    if meta:
        heads = torch.load(directory / "heads.pt", map_location="cpu", weights_only=True)
        model.score.load_state_dict(heads["score"])
        model.action.load_state_dict(heads["action"])
    tokenizer = AutoTokenizer.from_pretrained(str(encoder_dir), local_files_only=True)
    return model, tokenizer, meta
