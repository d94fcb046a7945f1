"""The element ranker of a two-stage web agent (DESIGN.md decision 7): an open encoder
fine-tuned with Ray Train to score a page's candidate elements against the task, the page and
the recent actions, with an action-type head on the same encoder.

    from actors.training.ranker import load_ranker
    ranker = load_ranker(uri)      # a registered local model's name (its checkpoint URI)
    ranker.rank(task, url, title, previous_actions, candidates)  # -> RankResult, best first

Modules: `model` (the network, its loss, the checkpoint layout), `train` (the TorchTrainer
and its per-worker loop), `infer` (Ranker, load_ranker), `storage` (where weights live; no
torch). torch and transformers come with the `train` extra and load only when used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RankResult", "RankedCandidate", "Ranker", "load_ranker"]


def __getattr__(name: str) -> Any:
    if name in __all__:  # torch loads on first use, not when `storage` is imported
        from actors.training.ranker import infer

        return getattr(infer, name)
    raise AttributeError(name)
