"""The model server: a Serve deployment that answers predictions of registered local rankers.

The ingress (serve_app/models_api.py) authenticates, finds the model in the registry and hands
this deployment the model's id, the URI of its weights and the step; a replica loads a model
once and keeps the few it used last (an LRU of `_CACHED_MODELS`), so a request pays for a
forward pass, not a load. Two requests for a model not loaded yet wait for one load.

torch is imported on the first prediction, never at start: a stack without the `train` extra
starts (and answers 503 naming the extra here). Its options (replicas, CPUs) live in
configs/serve.yaml only.
"""

# No `from __future__ import annotations`: Serve's builder reads the real types.
import asyncio
import logging
from collections import OrderedDict
from typing import Any

from ray import serve

from actors.errors import ConfigError, DependencyUnavailable, NotFound
from actors.logs import setup_logging
from configs.settings import TracemillSettings

__all__ = ["ModelServer", "train_extra_error"]

log = logging.getLogger(__name__)
_CACHED_MODELS = 3  # MiniLM is ~90 MB in memory; a replica holds a few at most


def train_extra_error() -> DependencyUnavailable | None:
    """The 503 a prediction gets when the `train` extra is missing here; None when present."""
    from actors.training.evaluation.local import require_train_extra

    try:
        require_train_extra("serving a local model")
    except ConfigError as exc:
        return DependencyUnavailable(exc.message, retry_after_s=3600.0, code="train_extra_missing")
    return None


def _load(load_ranker: Any, model_id: str, uri: str, object_store: Any) -> Any:
    try:
        return load_ranker(uri, object_store)
    except NotFound:  # registered, but its weights are gone: where they were stays in the log
        log.error("model %s: no weights at %s", model_id, uri)
        raise DependencyUnavailable(f"the weights of model {model_id} cannot be read", retry_after_s=60.0) from None


@serve.deployment(name="ModelServer")
class ModelServer:
    def __init__(self, settings: dict[str, Any]):
        # Public settings only (Serve keeps bound arguments); secrets from this replica's env.
        resolved = TracemillSettings.with_secrets(settings)
        setup_logging("model-server", resolved.log_level)
        self.object_store = resolved.object_store
        self._models: "OrderedDict[str, asyncio.Task[Any]]" = OrderedDict()

    async def _ranker(self, model_id: str, uri: str) -> Any:
        key = f"{model_id}\n{uri}"
        task = self._models.get(key)
        if task is None:
            from actors.training.ranker import load_ranker

            log.info("loading model %s from %s", model_id, uri)
            task = asyncio.ensure_future(asyncio.to_thread(_load, load_ranker, model_id, uri, self.object_store))
            self._models[key] = task
            while len(self._models) > _CACHED_MODELS:
                self._models.popitem(last=False)
        self._models.move_to_end(key)
        try:
            return await asyncio.shield(task)
        except Exception:
            if self._models.get(key) is task:
                del self._models[key]  # a failed load is not cached: the next request tries again
            raise

    async def predict(self, model_id: str, uri: str, step: dict[str, Any]) -> dict[str, Any]:
        """The step's candidates ranked (best first, softmax scores) and the predicted action."""
        if (missing := train_extra_error()) is not None:
            raise missing
        from actors.training.evaluation.ranker_scoring import VALUE_RULE, predicted_action

        ranker = await self._ranker(model_id, uri)
        result = await asyncio.to_thread(ranker.rank, step["task"], step["url"], step["title"],
                                         step["previous_actions"], step["candidates"])
        top = result.candidates[0] if result.candidates else None
        action = predicted_action(result.action_type, top, step["task"], step["previous_actions"])
        return {"candidates": [c.model_dump() for c in result.candidates],
                "action_type": result.action_type, "action_scores": result.action_scores,
                "action": action, "value_rule": VALUE_RULE}

    def cached_models(self) -> list[str]:
        return [key.split("\n", 1)[0] for key in self._models]
