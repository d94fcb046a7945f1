"""How a local ranker is scored and served, without torch or Ray: recall@k, the value rule, a
ranker's answer as an action under the evaluator's compare_step, the settings of a `local:`
evaluation, the prediction body's bounds, the guard naming the train extra, the synthetic corpus
of the dataset-value benchmark and its quality filter."""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from actors.errors import ConfigError, DependencyUnavailable
from actors.training.dataset.ranking import RankingCandidate, RankingRow, ranking_rows
from actors.training.evaluation.local import require_train_extra
from actors.training.evaluation.ranker_scoring import (
    positive_rank, predicted_action, ranker_metrics, ranking_measures, recorded_action, value_rule,
)
from cluster.bench.web_corpus import corpus
from cluster.eval_cli import format_comparison
from configs.base import SettingsError
from configs.evaluation import load_evaluation_settings
from serve_app.model_server import train_extra_error
from serve_app.models_api import PredictRequest

SEARCH = RankingCandidate(id="s", text='<input> "Search" testid=search', selector="testid=search")
ADD = RankingCandidate(id="a", text='<button> "Add to cart" testid=add', selector="testid=add")
WISH = RankingCandidate(id="w", text='<button> "Wishlist" testid=wish', selector="testid=wish")


def row(action_type: str, positive: str | None, value: str | None = None, task: str = 'Search for "red kettle"',
        previous: list[str] | None = None) -> RankingRow:
    cands = [c.model_copy(update={"positive": c.id == positive}) for c in (SEARCH, ADD, WISH)]
    return RankingRow(session_id="s1", step_index=0, task=task, url="https://shop.example/", title="Shop",
                      previous_actions=previous or [], action_type=action_type, value=value, candidates=cands)


def result(order: str, action_type: str) -> SimpleNamespace:
    """A RankResult's shape (infer.RankResult needs torch to import)."""
    by_id = {c.id: c for c in (SEARCH, ADD, WISH)}
    return SimpleNamespace(candidates=[SimpleNamespace(id=i, score=1 / 3, text=by_id[i].text,
                                                       selector=by_id[i].selector) for i in order],
                           action_type=action_type)


def test_positive_rank_and_recall_at_k() -> None:
    assert positive_rank(["a", "b", "c"], "c") == 3 and positive_rank(["a"], "z") is None
    assert positive_rank([2, 0, 1], 0) == 2 and positive_rank(["a"], None) is None
    m = ranking_measures([1, 3, 7, None], applicable=4)
    assert m["recall_at_1"] == 0.25 and m["recall_at_5"] == 0.5 and m["recall_at_10"] == 0.75
    assert m["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 7) / 4) and m["ranked_steps"] == 4
    assert ranking_measures([])["recall_at_1"] is None


def test_the_value_rule_copies_quoted_spans_of_the_task_not_yet_typed() -> None:
    task = 'Buy the Blue Kettle: search "blue kettle", then check out as “Ada Lovelace”'
    assert value_rule("type", task) == "blue kettle"
    typed = [json.dumps({"action": "input", "value": "blue  kettle"})]
    assert value_rule("type", task, typed) == "Ada Lovelace"
    assert value_rule("select", "add '2' of them") == "2"
    assert value_rule("type", "no quotes here") is None and value_rule("click", task) is None
    assert value_rule("key", task) == "Enter" and value_rule("navigate", task) is None


def test_a_rankers_answer_is_scored_by_the_evaluators_compare_step() -> None:
    rows = [row("type", "s", "red kettle"), row("click", "a"), row("click", "a"), row("navigate", None, "https://x/")]
    results = [result("saw", "type"), result("saw", "click"), result("asw", "click"), result("saw", "navigate")]
    assert recorded_action(rows[0]) == {"action": "input", "selector": "testid=search",
                                        "element_text": SEARCH.text, "value": "red kettle"}
    assert predicted_action("click", results[1].candidates[0], rows[1].task)["selector"] == "testid=search"
    m = ranker_metrics(rows, results)
    # type: element, type and value right; click 1: wrong element; click 2: right; navigate: no URL guessed.
    assert m["examples"] == 4 and m["element_accuracy"] == pytest.approx(2 / 3)
    assert m["action_type_accuracy"] == 1.0 and m["step_accuracy"] == 0.5
    assert m["ranking"]["recall_at_1"] == pytest.approx(2 / 3) and m["ranking"]["ranked_steps"] == 3
    assert m["per_action"]["navigate"]["value_accuracy"] == 0.0


def test_local_models_are_the_local_providers() -> None:
    assert load_evaluation_settings(None, {"model": "local:base"}).provider == "local"
    assert load_evaluation_settings(None, {"model": f"local:{uuid.uuid4()}", "provider": "local"}).provider == "local"
    assert load_evaluation_settings(None, {"model": "ft:gpt-4o-mini:x"}).provider == "openai"
    with pytest.raises(SettingsError, match="provider 'local' goes with a model local:"):
        load_evaluation_settings(None, {"model": "gpt-4o", "provider": "local"})
    with pytest.raises(SettingsError, match="provider 'local' goes with"):
        load_evaluation_settings(None, {"model": "local:base", "provider": "openai"})


def test_comparison_shows_recall_for_rankers_and_dashes_for_chat_models() -> None:
    def evaluation(model: str, ranking: dict[str, Any] | None) -> dict[str, Any]:
        return {"model": model, "eval_id": uuid.uuid4(), "dataset_name": "d", "dataset_id": uuid.UUID(int=1),
                "examples": 10, "answered": 10, "step_accuracy": 0.5, "element_accuracy": 0.6,
                "action_type_accuracy": 0.9, "details": {"per_action": {}, **({"ranking": ranking} if ranking else {})}}

    text = format_comparison(evaluation("ft:gpt-4o-mini:x", None),
                             evaluation("local:base", {"recall_at_1": 0.6, "recall_at_5": 0.9, "recall_at_10": 1.0}))
    line = next(ln for ln in text.splitlines() if ln.startswith("ranker recall@5"))
    assert "-" in line.split()[2] and "90.0%" in line


def test_the_guard_names_the_train_extra_without_importing_it() -> None:
    with pytest.raises(ConfigError, match=r"needs the train extra \(no_such_module_x missing\): "
                                          r"pip install 'tracemill\[train\]'") as info:
        require_train_extra("serving a local model", ("json", "no_such_module_x"))
    assert info.value.code == "train_extra_missing"
    assert train_extra_error() is None  # installed here (the test run installs .[test,train])


def test_train_extra_error_is_a_503_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    err = train_extra_error()
    assert isinstance(err, DependencyUnavailable) and "tracemill[train]" in err.message and "torch" in err.message


@pytest.mark.parametrize("body, field", [
    ({"task": "t", "candidates": []}, "body.candidates"),
    ({"task": "t"}, "body.candidates"),
    ({"task": "t", "candidates": [{"id": "a", "text": "x"}] * 2}, "unique"),
    ({"task": "t", "candidates": [{"id": str(i), "text": "x"} for i in range(501)]}, "body.candidates"),
    ({"task": "t" * 4001, "candidates": [{"id": "a", "text": "x"}]}, "body.task"),
    ({"task": "t", "candidates": [{"id": "a", "text": "x", "bogus": 1}]}, "bogus"),
])
def test_prediction_bodies_are_bounded(body: dict[str, Any], field: str) -> None:
    from actors.errors import details_from_validation_error

    with pytest.raises(ValidationError) as info:
        PredictRequest.model_validate(body)
    assert field in json.dumps(details_from_validation_error(info.value, "body"))


def test_the_benchmark_corpus_is_seeded_and_degraded_as_asked() -> None:
    first, again = corpus(6, 8, seed=3), corpus(6, 8, seed=3)
    assert [s.events for s in first] == [s.events for s in again]
    assert sum(1 for s in first if not s.degradations) == 6
    kinds = {d for s in first for d in s.degradations}
    assert kinds == {"misclick", "abandoned", "selectors", "screenshots"}
    for s in first:
        rows = ranking_rows(s.session, s.events)
        assert rows and all(sum(c.positive for c in r.candidates) <= 1 for r in rows)
        if "abandoned" in s.degradations:
            assert not s.finished
        if "screenshots" in s.degradations:
            assert s.screenshot_count == 0
        if "selectors" in s.degradations:
            assert all(sel["kind"] == "xpath" for e in s.events for sel in (e.get("target") or {}).get("selectors", []))


def test_the_quality_filter_report_counts_faults() -> None:
    from cluster.bench.dataset_value import _filter

    sessions = corpus(4, 8, seed=1)
    kept, report = _filter(sessions, 0.8)
    assert report["clean"] == {"sessions": 4, "dropped": 0, "mean_quality": report["clean"]["mean_quality"]}
    assert report["selectors"]["dropped"] >= 1 and len(kept) < len(sessions)
