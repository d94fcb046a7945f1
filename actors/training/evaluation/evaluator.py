"""Evaluate a model on a dataset's validation split: load it, ask the model, score, store.

Everything that can be checked before spending a request is checked before the
`evaluations` row is written: the dataset exists and succeeded, it has a validation split
whose bytes match their recorded sha256, and every line is an example whose last message is
a recorded action. The model then gets each example's messages without that last one.

Requests go out from `concurrency` workers that pull examples from one queue (so no more
than that many are ever in flight, and a 100k-example split is not 100k pending tasks), each
paced by a shared RateLimiter (requests and tokens per minute).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from actors.errors import DependencyUnavailable, InvalidInput
from actors.storage.objectstore import ObjectStore, make_object_store
from actors.storage.postgres import connect_pool
from actors.training.evaluation.compare import StepResult, aggregate, compare_step, parse_action
from actors.training.evaluation.local import (
    is_local, load_ranking_validation, local_model_uri, rank_rows, require_train_extra,
)
from actors.training.evaluation.ranker_scoring import VALUE_RULE, score_all
from actors.training.evaluation.predictor import ChatPredictor, OpenAIChatPredictor, estimate_request_tokens
from actors.storage.evaluation_repo import (
    DatasetRef, finish_evaluation, get_dataset, insert_running, mark_failed,
)
from actors.vision.limits import RateLimiter
from configs.evaluation import EvaluationSettings
from configs.settings import TracemillSettings

__all__ = ["EvalReport", "Outcome", "evaluate_dataset", "load_validation", "run_predictions"]

log = logging.getLogger("tracemill.evaluate")
VALIDATION_FILE = "validation.jsonl"
_MISTAKES_KEPT = 20  # examples of wrong steps kept in details, for a first look


@dataclass(frozen=True)
class Outcome:
    index: int
    result: StepResult
    predicted: dict[str, Any] | None
    error: str | None = None


@dataclass
class EvalReport:
    eval_id: uuid.UUID
    dataset_id: uuid.UUID
    model: str
    metrics: dict[str, Any]
    details: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- loading

def _parse_examples(data: bytes) -> list[dict[str, Any]]:
    examples = []
    for n, line in enumerate(data.decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            ex = json.loads(line)
            msgs = ex["messages"]
            if msgs[-1]["role"] != "assistant" or json.loads(msgs[-1]["content"])["action"] is None:
                raise ValueError("no recorded action")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise InvalidInput(f"validation.jsonl line {n} is not an example with a recorded "
                               f"action ({type(exc).__name__})") from None
        examples.append(ex)
    return examples


async def load_validation(store: ObjectStore, dataset: DatasetRef) -> list[dict[str, Any]]:
    """The dataset's validation examples; InvalidInput when it cannot be evaluated."""
    if dataset.status != "succeeded":
        raise InvalidInput(f"dataset {dataset.dataset_id} is {dataset.status}, not succeeded")
    entry = dataset.files.get(VALIDATION_FILE)
    if not isinstance(entry, Mapping) or not entry.get("key"):
        raise InvalidInput(f"dataset {dataset.dataset_id} has no validation split")
    data = await store.get(str(entry["key"]))
    if entry.get("sha256") and hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise InvalidInput(f"dataset {dataset.dataset_id}: validation.jsonl does not match "
                           "its recorded sha256")
    examples = _parse_examples(data)
    if not examples:
        raise InvalidInput(f"dataset {dataset.dataset_id}: the validation split is empty")
    return examples


# ----------------------------------------------------------------------------- predicting

async def _predict_one(index: int, example: Mapping[str, Any], predictor: ChatPredictor,
                       limiter: RateLimiter, output_budget: int) -> Outcome:
    messages = example["messages"]
    recorded = json.loads(messages[-1]["content"])
    estimate = estimate_request_tokens(messages[:-1], output_budget)
    await limiter.acquire(estimate)
    reply = await predictor.complete(messages[:-1])
    limiter.settle(estimate, reply.tokens if reply.tokens is not None else estimate)
    predicted = parse_action(reply.text) if reply.error is None else None
    return Outcome(index, compare_step(recorded, predicted), predicted, reply.error)


async def run_predictions(examples: Sequence[Mapping[str, Any]], predictor: ChatPredictor,
                          settings: EvaluationSettings,
                          on_progress: Callable[[int, int, list[Outcome]], None] | None = None,
                          limiter: RateLimiter | None = None) -> list[Outcome]:
    """Every example answered and scored, in input order. A fatal provider error (bad key,
    unknown model) stops all workers and is raised. One limiter paces all workers (the
    settings' RPM and TPM unless one is given)."""
    limiter = limiter or RateLimiter(settings.requests_per_minute, settings.tokens_per_minute)
    queue = iter(enumerate(examples))  # one event loop: next() needs no lock
    done: list[Outcome] = []

    async def worker() -> None:
        for index, example in queue:
            done.append(await _predict_one(index, example, predictor, limiter,
                                           settings.max_output_tokens))
            if on_progress and (len(done) % settings.progress_every == 0 or len(done) == len(examples)):
                on_progress(len(done), len(examples), done)

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(settings.concurrency, len(examples))):
                group.create_task(worker())
    except ExceptionGroup as failures:
        # The first worker's error is the cause (the others were cancelled by it).
        raise failures.exceptions[0] from None
    return sorted(done, key=lambda o: o.index)


def _progress_logger(started: float) -> Callable[[int, int, list[Outcome]], None]:
    def report(n: int, total: int, done: list[Outcome]) -> None:
        correct = sum(o.result.step for o in done)
        rate = n / max(time.monotonic() - started, 1e-6)
        log.info("evaluated %d/%d (step accuracy so far %.3f, %.1f examples/s)",
                 n, total, correct / n, rate)
    return report


# ----------------------------------------------------------------------------- the job

def _details(metrics: dict[str, Any], outcomes: list[Outcome], settings: EvaluationSettings,
             dataset: DatasetRef, elapsed_s: float) -> dict[str, Any]:
    errors = Counter(o.error for o in outcomes if o.error)
    mistakes = [{"index": o.index, "recorded": o.result.action, "predicted": o.predicted,
                 "error": o.error} for o in outcomes if not o.result.step][:_MISTAKES_KEPT]
    return {
        "dataset_name": dataset.name,
        "per_action": metrics["per_action"],
        "value_accuracy": metrics["value_accuracy"],
        "unanswered": metrics["unanswered"],
        "errors": dict(errors),
        "predicted_actions": dict(Counter(str((o.predicted or {}).get("action")) for o in outcomes)),
        "mistakes": mistakes,
        "elapsed_s": round(elapsed_s, 3),
        "examples_per_s": round(len(outcomes) / max(elapsed_s, 1e-6), 3),
        "settings": settings.model_dump(mode="json", exclude={"api_key"}),
    }


async def evaluate_dataset(settings: TracemillSettings, ev: EvaluationSettings,
                           dataset_id: str | uuid.UUID,
                           predictor: ChatPredictor | None = None) -> EvalReport:
    """Run one evaluation end to end and store it; see the module docstring for the order.
    A `local:` model is a ranker of this cluster (actors.training.evaluation.local)."""
    pool = await connect_pool(settings.database)
    store = make_object_store(settings.object_store)
    try:
        dataset = await get_dataset(pool, dataset_id)
        if is_local(ev.model):
            return await _evaluate_local(pool, store, settings, ev, dataset)
        examples = await load_validation(store, dataset)
        examples = examples[:ev.max_examples] if ev.max_examples else examples
        predictor = predictor or OpenAIChatPredictor(ev)  # a missing key fails here, no row yet
        try:
            async def produce() -> tuple[list[Outcome], dict[str, Any]]:
                started = time.monotonic()
                return await run_predictions(examples, predictor, ev, _progress_logger(started)), {}

            return await _run(pool, ev, dataset, len(examples), produce)
        finally:
            await predictor.aclose()
    finally:
        await pool.close()
        await store.close()


async def _evaluate_local(pool: Any, store: ObjectStore, settings: TracemillSettings, ev: EvaluationSettings,
                          dataset: DatasetRef) -> EvalReport:
    """A local ranker on the validation ranking rows: model, rows and the train extra checked
    before the row is written; ranking in a thread (torch), scored like any model."""
    rows = await load_ranking_validation(store, dataset)
    rows = rows[:ev.max_examples] if ev.max_examples else rows
    uri = await local_model_uri(pool, ev.model, dataset.org_id)
    require_train_extra("evaluating a local model")
    started = time.monotonic()

    def progress(n: int, total: int) -> None:
        log.info("ranked %d/%d steps (%.1f steps/s)", n, total, n / max(time.monotonic() - started, 1e-6))

    async def produce() -> tuple[list[Outcome], dict[str, Any]]:
        results = await asyncio.to_thread(rank_rows, uri, rows, settings.object_store, progress)
        scored, ranking = score_all(rows, results)
        outcomes = [Outcome(i, verdict, predicted) for i, (verdict, predicted, _) in enumerate(scored)]
        return outcomes, {"ranking": ranking, "value_rule": VALUE_RULE, "model_uri": uri}

    return await _run(pool, ev, dataset, len(rows), produce)


async def _run(pool: Any, ev: EvaluationSettings, dataset: DatasetRef, n_examples: int,
               produce: Callable[[], Awaitable[tuple[list[Outcome], dict[str, Any]]]]) -> EvalReport:
    """Write the running row, get the outcomes (and extra measures, kept in the metrics and
    the details), store them; the row ends failed on any error."""
    eval_id = await insert_running(pool, org_id=dataset.org_id, dataset_id=dataset.dataset_id,
                                   provider=ev.provider, model=ev.model, examples=n_examples,
                                   details={"settings": ev.model_dump(mode="json", exclude={"api_key"})})
    log.info("evaluation %s: %s on %d validation examples of dataset %s (concurrency %d)",
             eval_id, ev.model, n_examples, dataset.dataset_id, ev.concurrency)
    started = time.monotonic()
    try:
        outcomes, extra = await produce()
        metrics = {**aggregate(o.result for o in outcomes), **extra}
        details = {**_details(metrics, outcomes, ev, dataset, time.monotonic() - started), **extra}
        failed = sum(details["errors"].values())
        if failed > ev.max_error_share * len(outcomes):
            raise DependencyUnavailable(
                f"{failed} of {len(outcomes)} examples got no reply after {ev.max_attempts} "
                f"attempts ({', '.join(sorted(details['errors']))})", retry_after_s=60.0)
        await finish_evaluation(pool, eval_id, metrics, details)
    except BaseException as exc:
        # Shielded: a cancelled job must still leave its row failed, not running forever.
        await asyncio.shield(mark_failed(pool, eval_id, str(exc) or type(exc).__name__))
        raise
    return EvalReport(eval_id, dataset.dataset_id, ev.model, metrics, details)
