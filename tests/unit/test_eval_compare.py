"""Scoring predicted web-agent actions against recorded ones, the evaluation settings, the
worker pool's bounds and the comparison table: pure logic, no Ray, no database."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from actors.errors import ConfigError
from actors.training.evaluation.compare import (
    StepResult, aggregate, compare_step, normalise_text, normalise_url, parse_action,
)
from actors.training.evaluation.predictor import Reply, estimate_request_tokens
from actors.training.evaluation.evaluator import run_predictions
from actors.vision.limits import RateLimiter
from cluster.eval_cli import format_comparison
from configs.base import SettingsError
from configs.evaluation import EvaluationSettings, load_evaluation_settings

CLICK = {"action": "click", "selector": "testid=add-1", "element_text": "Add to cart"}
INPUT = {"action": "input", "selector": "testid=search", "element_text": "Search", "value": "red kettle"}


# ----------------------------------------------------------------------------- parsing

@pytest.mark.parametrize("reply", [
    json.dumps(CLICK),
    f"```json\n{json.dumps(CLICK)}\n```",
    f"```\n{json.dumps(CLICK, indent=2)}\n```",
    f"I will click it: {json.dumps(CLICK)} — done.",
    f"Thinking {{not json}} then {json.dumps(CLICK)}",
])
def test_replies_with_an_action_somewhere_parse(reply: str) -> None:
    assert parse_action(reply) == CLICK


@pytest.mark.parametrize("reply", [None, "", "   ", "click the button", '{"selector": "x"}',
                                   '["click"]', '{"action": 3}', "{broken"])
def test_replies_without_an_action_do_not_parse(reply: str | None) -> None:
    assert parse_action(reply) is None


def test_normalisers() -> None:
    assert normalise_text("  Add \n to   CART…") == "add to cart"
    assert normalise_url("HTTPS://Shop.Example:443/p/42/?b=2&a=1#top") == "https://shop.example/p/42?a=1&b=2"
    assert normalise_url("http://shop.example") == "http://shop.example/"
    assert normalise_url("http://shop.example:8080/x") == "http://shop.example:8080/x"
    assert normalise_url("https://shop.example/a") != normalise_url("https://shop.example/b")


# ----------------------------------------------------------------------------- one step

def test_the_same_action_is_right_on_every_measure() -> None:
    assert compare_step(CLICK, dict(CLICK)) == StepResult("click", True, True, True, None, True)


def test_other_selector_same_text_is_the_same_element() -> None:
    pred = {"action": "click", "selector": 'role=button[name="Add to cart"]', "element_text": " add to  CART "}
    assert compare_step(CLICK, pred).element is True and compare_step(CLICK, pred).step


def test_same_selector_counts_even_when_the_text_differs() -> None:
    assert compare_step(CLICK, {"action": "click", "selector": "testid=add-1", "element_text": "Buy"}).step


def test_other_selector_and_other_or_empty_text_is_another_element() -> None:
    for pred in ({"action": "click", "selector": "testid=add-2", "element_text": "Add to basket"},
                 {"action": "click", "selector": "testid=add-2"}):
        r = compare_step(CLICK, pred)
        assert (r.action_type, r.element, r.step) == (True, False, False)
    # Empty texts never match each other.
    r = compare_step({"action": "click", "selector": "css=#a"}, {"action": "click", "selector": "css=#b"})
    assert r.element is False


def test_wrong_type_right_element() -> None:
    r = compare_step(CLICK, {"action": "dblclick", "selector": "testid=add-1"})
    assert (r.action_type, r.element, r.step) == (False, True, False)


def test_values_compare_after_whitespace_but_keep_case() -> None:
    assert compare_step(INPUT, {**INPUT, "value": "  red   kettle\n"}).step
    r = compare_step(INPUT, {**INPUT, "value": "Red kettle"})
    assert (r.element, r.value, r.step) == (True, False, False)
    assert compare_step(INPUT, {k: v for k, v in INPUT.items() if k != "value"}).value is False


def test_keypress_compares_the_key_and_navigate_the_url() -> None:
    enter = {"action": "keypress", "selector": "testid=search", "element_text": "Search", "key": "Enter"}
    assert compare_step(enter, {**enter, "key": " Enter "}).step
    assert not compare_step(enter, {**enter, "key": "Tab"}).step
    nav = {"action": "navigate", "url": "https://shop.example/cart"}
    r = compare_step(nav, {"action": "Navigate", "url": "https://SHOP.example/cart/#x"})
    assert r == StepResult("navigate", True, True, None, True, True)
    assert not compare_step(nav, {"action": "navigate", "url": "https://shop.example/checkout"}).step


def test_an_unparsed_reply_is_wrong_on_every_applicable_measure() -> None:
    assert compare_step(INPUT, None) == StepResult("input", False, False, False, False, False)
    assert compare_step({"action": "submit"}, None) == StepResult("submit", False, False, None, None, False)


# ----------------------------------------------------------------------------- aggregate

def test_aggregate_counts_only_applicable_measures_and_splits_by_type() -> None:
    nav = {"action": "navigate", "url": "https://a.example/"}
    results = [compare_step(CLICK, CLICK), compare_step(CLICK, {"action": "click", "selector": "x"}),
               compare_step(INPUT, None), compare_step(nav, nav)]
    m = aggregate(results)
    assert (m["examples"], m["answered"], m["unanswered"]) == (4, 3, 1)
    assert m["step_accuracy"] == 2 / 4
    assert m["element_accuracy"] == 1 / 3  # the navigate has no element
    assert m["action_type_accuracy"] == 3 / 4
    assert m["value_accuracy"] == 1 / 2  # input (unanswered) and navigate
    assert m["per_action"]["click"]["step_accuracy"] == 0.5
    assert m["per_action"]["navigate"]["element_accuracy"] is None
    assert aggregate([])["step_accuracy"] is None


# ----------------------------------------------------------------------------- settings

def test_settings_reject_bad_values_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "eval.yaml"
    config.write_text("evaluation:\n  concurrency: 0\n  tempo: 3\n")
    with pytest.raises(SettingsError) as err:
        load_evaluation_settings(config, {"model": "m"})
    text = str(err.value)
    assert "\n" not in text and "concurrency" in text and "tempo" in text
    with pytest.raises(SettingsError, match="provider"):
        load_evaluation_settings(None, {"model": "m", "provider": "anthropic"})
    with pytest.raises(SettingsError, match="model"):
        load_evaluation_settings(None, {})


def test_flags_override_the_file(tmp_path: Path) -> None:
    config = tmp_path / "eval.yaml"
    config.write_text("concurrency: 2\nrequests_per_minute: 60\napi_key: sk-x\n")
    s = load_evaluation_settings(config, {"model": "m", "concurrency": 5, "max_examples": None})
    assert (s.concurrency, s.requests_per_minute, s.max_examples) == (5, 60, None)
    assert "sk-x" not in repr(s)


def test_the_job_refuses_bad_settings_before_joining_a_cluster(capsys: pytest.CaptureFixture[str]) -> None:
    from jobs.evaluate import main

    # ray.init raises in unit tests: exit 2 proves nothing was joined or written.
    assert main(["--dataset", str(uuid.uuid4()), "--model", "m", "--provider", "bogus"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("evaluate: invalid evaluation settings") and "\n" not in err


def test_request_token_estimate_counts_images_flat() -> None:
    text = [{"role": "user", "content": "x" * 400}]
    image = [{"role": "user", "content": [{"type": "text", "text": "x" * 400}, {
        "type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 100_000}}]}]
    assert estimate_request_tokens(text, 100) == 100 + 3 + 4 + 100
    assert estimate_request_tokens(image, 100) == 100 + 3 + 4 + 100 + 1105


# ----------------------------------------------------------------------------- worker pool

class _SlowEcho:
    """A stand-in model host: answers each request with its recorded action after a pause."""

    def __init__(self, fatal_at: int | None = None) -> None:
        self.in_flight = self.max_in_flight = self.calls = 0
        self.fatal_at = fatal_at

    async def complete(self, messages: Any) -> Reply:
        self.calls += 1
        if self.calls == self.fatal_at:
            raise ConfigError("model not found")
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await asyncio.sleep(0.01)
        self.in_flight -= 1
        return Reply(messages[-1]["content"], tokens=10)

    async def aclose(self) -> None:
        pass


def _examples(n: int) -> list[dict[str, Any]]:
    # The user text is the answer, so the echo is an oracle and order mistakes would show.
    return [{"messages": [{"role": "user", "content": json.dumps({**CLICK, "selector": f"testid={i}"})},
                          {"role": "assistant", "content": json.dumps({**CLICK, "selector": f"testid={i}"})}]}
            for i in range(n)]


def test_workers_bound_concurrency_keep_order_and_report_progress() -> None:
    echo, seen = _SlowEcho(), []
    settings = EvaluationSettings(model="m", concurrency=3, progress_every=4)
    out = asyncio.run(run_predictions(_examples(10), echo, settings, lambda n, t, _: seen.append((n, t))))
    assert [o.index for o in out] == list(range(10)) and all(o.result.step for o in out)
    assert echo.max_in_flight == 3
    assert seen == [(4, 10), (8, 10), (10, 10)]


def test_a_fatal_provider_error_stops_the_run() -> None:
    echo = _SlowEcho(fatal_at=3)
    with pytest.raises(ConfigError, match="model not found"):
        asyncio.run(run_predictions(_examples(50), echo, EvaluationSettings(model="m", concurrency=2)))
    assert echo.calls < 50


def test_requests_are_paced_by_the_rate_limit() -> None:
    # A frozen clock and a sleep that only records: 2 requests a minute lets two go at once,
    # then each further one waits another 30 s of refill.
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    limiter = RateLimiter(2, 1_000_000, clock=lambda: 0.0, sleep=record)
    settings = EvaluationSettings(model="m", concurrency=1, requests_per_minute=2)
    out = asyncio.run(run_predictions(_examples(5), _SlowEcho(), settings, limiter=limiter))
    assert len(out) == 5 and waits == [30.0, 60.0, 90.0]


# ----------------------------------------------------------------------------- compare table

def _row(model: str, step: float, per_click: float) -> dict[str, Any]:
    return {"model": model, "eval_id": uuid.uuid4(), "dataset_id": uuid.UUID(int=1), "dataset_name": "shop",
            "examples": 10, "answered": 9, "step_accuracy": step, "element_accuracy": 0.9,
            "action_type_accuracy": 1.0,
            "details": {"per_action": {"click": {"examples": 6, "step_accuracy": per_click}}}}


def test_comparison_shows_both_models_and_the_difference() -> None:
    text = format_comparison(_row("base", 0.5, 0.5), _row("ft:tuned", 0.8, 1.0))
    assert "base" in text and "ft:tuned" in text
    step = next(line for line in text.splitlines() if line.startswith("step accuracy "))
    assert "50.0%" in step and "80.0%" in step and "+30.0 pp" in step
    assert any("click (6)" in line and "+50.0 pp" in line for line in text.splitlines())
    assert "different datasets" not in text
