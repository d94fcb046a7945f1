"""Session quality scores on crafted sessions, and the pipeline settings that drive them."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from actors.errors import ConfigError, InvalidInput
from actors.context.scoring import (
    NO_STEPS,
    QualityScores,
    SessionFacts,
    load_pipeline_settings,
    score_session,
)
from actors.training.dataset.formats import action_steps
from configs.pipeline import DEFAULT_PIPELINE_FILE, PipelineSettings
from configs.settings import SettingsError

SHOP = "https://shop.example"
COMPONENTS = ("completeness", "selector_reliability", "screenshot_quality", "training_value",
              "overall")


def good_el(name: str, tag: str = "button") -> dict[str, Any]:
    return {"tag": tag, "text": name.title(), "attributes": {"data-testid": name},
            "selectors": [{"kind": "testid", "value": name, "unique": True},
                          {"kind": "role", "value": f'{tag}[name="{name}"]', "unique": True},
                          {"kind": "css", "value": f"#{name}", "unique": True}]}


def xpath_el(i: int) -> dict[str, Any]:
    return {"tag": "div", "selectors": [{"kind": "xpath", "value": f"//div/div[{i}]/span",
                                         "unique": False}]}


def events_of(steps: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    ts, url, out = 1_732_262_400_000, SHOP + "/", []
    for seq, (type_, fields) in enumerate(steps):
        ts += 900
        url = fields.get("url", url)
        out.append({"seq": seq, "type": type_, "ts": ts, "url": url, **fields})
    return out


def clean_session(target: Any = good_el) -> list[dict[str, Any]]:
    return events_of([
        ("navigation", {"url": SHOP + "/", "transition": "typed"}),
        ("click", {"target": target("search", "input")}),
        ("input", {"target": target("search", "input"), "value": "kettle"}),
        ("keypress", {"key": "Enter", "target": target("search", "input")}),
        ("navigation", {"url": SHOP + "/search?q=kettle", "transition": "form_submit"}),
        ("click", {"target": target("result-1", "a")}),
        ("navigation", {"url": SHOP + "/p/kettle"}),
        ("click", {"target": target("add-to-cart")}),
        ("modal", {"state": "opened"}),
        ("navigation", {"url": SHOP + "/checkout"}),
        ("input", {"target": target("email", "input"), "value": "a@b.example"}),
        ("submit", {"target": target("pay-form", "form")}),
    ])


GOOD_FACTS = SessionFacts(task="Buy a kettle", finished=True, screenshot_count=7,
                          screenshot_qualities=[0.9, 0.95, 0.85, 0.9, 0.92, 0.88, 0.9])


def test_clean_session_scores_high() -> None:
    s = score_session(clean_session(), GOOD_FACTS, PipelineSettings())
    assert s.overall > 0.9 and not s.rejected
    assert min(s.completeness, s.selector_reliability, s.training_value) > 0.85
    assert s.reasons == [] and s.suggestions == []


def test_xpath_only_non_unique_selectors_score_low_with_reason() -> None:
    s = score_session(clean_session(lambda name, tag="button": xpath_el(len(name))), GOOD_FACTS)
    assert s.selector_reliability < 0.1
    assert any("XPath" in r for r in s.reasons)
    assert any("more than one element" in r for r in s.reasons)
    assert any("data-testid" in tip for tip in s.suggestions)


def test_selector_ranking_follows_playwright() -> None:
    def only(kind: str, value: str) -> float:
        el = {"tag": "button", "selectors": [{"kind": kind, "value": value, "unique": True}]}
        events = events_of([("click", {"target": el})])
        return score_session(events, GOOD_FACTS).selector_reliability

    ranked = [only("testid", "buy"), only("role", 'button[name="Buy"]'), only("label", "Buy"),
              only("text", "Buy"), only("css", "#buy"), only("css", "div.card > button"),
              only("xpath", "//div/button")]
    assert ranked == sorted(ranked, reverse=True) and len(set(ranked)) == len(ranked)
    assert only("css", "#btn-3fa9c2e1") < only("css", "#buy")  # generated-looking id


def test_gaps_lower_completeness() -> None:
    full = clean_session()
    holed = [e for e in full if e["seq"] not in (2, 3, 4, 8)]
    a, b = score_session(full, GOOD_FACTS), score_session(holed, GOOD_FACTS)
    assert b.completeness < a.completeness
    assert b.parts["completeness.sequence"] == pytest.approx(8 / 12, abs=1e-4)
    assert any("missing (seq gaps 2–4, 8)" in r for r in b.reasons)


def test_missing_targets_and_screenshots_lower_completeness() -> None:
    events = clean_session()
    for e in events:
        if e["type"] == "click":
            del e["target"]
    s = score_session(events, GOOD_FACTS.model_copy(update={"screenshot_count": 1}))
    assert s.parts["completeness.targets"] == pytest.approx(3 / 6)
    assert s.parts["completeness.screenshots"] < 0.3
    assert any("no target element" in r for r in s.reasons)


def test_scroll_noise_lowers_training_value() -> None:
    base = clean_session()
    scrolls = [("scroll", {"x": 0, "y": 100 * i}) for i in range(20)]
    noisy = events_of([(e["type"], {k: v for k, v in e.items() if k not in ("seq", "ts")})
                       for e in base[:7]] + scrolls
                      + [(e["type"], {k: v for k, v in e.items() if k not in ("seq", "ts")})
                         for e in base[7:]])
    a, b = score_session(base, GOOD_FACTS), score_session(noisy, GOOD_FACTS)
    assert b.training_value < a.training_value - 0.2
    assert any("noise" in r and "19 in scroll-only" in r for r in b.reasons)


def test_repeated_identical_events_are_noise() -> None:
    click = ("click", {"target": good_el("buy")})
    s = score_session(events_of([("navigation", {"url": SHOP + "/"})] + [click] * 10), GOOD_FACTS)
    assert s.parts["training_value.noise"] == 0.0


def test_poor_session_is_rejected_with_reasons_and_suggestions() -> None:
    events = events_of([("navigation", {"url": SHOP + "/"})]
                       + [("scroll", {"x": 0, "y": i}) for i in range(6)]
                       + [("click", {"target": xpath_el(3)})])
    events = [e for e in events if e["seq"] != 4]
    s = score_session(events, {"task": None, "finished": False, "screenshot_count": 0})
    assert s.rejected and s.overall < 0.45
    assert s.reasons[0].startswith("Overall quality")
    tips = " | ".join(s.suggestions)
    for advice in ("record a task description", "finish the session", "data-testid",
                   "screenshot"):
        assert advice in tips


def test_unmeasured_screenshots_are_neutral_with_a_reason() -> None:
    s = score_session(clean_session(), GOOD_FACTS.model_copy(update={"screenshot_qualities": None}))
    assert s.screenshot_quality == 0.5
    assert any("not measured" in r for r in s.reasons)
    poor = score_session(clean_session(), GOOD_FACTS.model_copy(
        update={"screenshot_qualities": [0.1, 0.2, 0.9]}))
    assert poor.screenshot_quality == pytest.approx(0.4)
    assert any("2 of 3" in r for r in poor.reasons)


def _random_event(rng: random.Random, seq: int) -> dict[str, Any]:
    kinds = ["navigation", "click", "input", "scroll", "submit", "keypress", "screenshot",
             "dom_snapshot", "modal", "custom", "dblclick", "select", "change"]
    event: dict[str, Any] = {"seq": seq, "type": rng.choice(kinds), "ts": 1_700_000_000_000 + seq}
    roll = rng.random()
    if roll < 0.5:
        event["target"] = rng.choice([good_el("x"), xpath_el(seq), {"tag": "a"}, {},
                                      {"tag": "b", "selectors": [{"kind": "css", "value": ""}]}])
    elif roll < 0.6:
        event["target"] = "garbage"
    event["url"] = rng.choice([SHOP + "/", SHOP + "/p/1", None, 42])
    return event


@pytest.mark.parametrize("seed", range(25))
def test_scores_always_in_unit_interval_and_deterministic(seed: int) -> None:
    rng = random.Random(seed)
    events = [_random_event(rng, s) for s in rng.sample(range(80), rng.randint(0, 60))]
    facts = {"task": rng.choice([None, "", "do it"]), "finished": rng.random() < 0.5,
             "screenshot_count": rng.randint(0, 50),
             "screenshot_qualities": rng.choice([None, [], [rng.random() for _ in range(5)]])}
    first = score_session(events, facts)
    again = score_session(list(reversed(events)), dict(facts))
    assert first == again
    for name in COMPONENTS:
        assert 0.0 <= getattr(first, name) <= 1.0
    assert all(0.0 <= v <= 1.0 for v in first.parts.values())
    no_steps = not action_steps({}, events)
    assert first.rejected == (first.overall < 0.45 or no_steps)
    assert (NO_STEPS in first.reasons) == no_steps


def scroll_only(n: int = 12) -> list[dict[str, Any]]:
    return events_of([("navigation", {"url": SHOP + "/", "transition": "link"}),
                      *[("scroll", {"x": 0, "y": 100 * i}) for i in range(n)]])


def test_a_session_without_action_steps_is_rejected_whatever_it_scores() -> None:
    s = score_session(scroll_only(), GOOD_FACTS)
    assert s.overall >= 0.45, "the rule, not the score, rejects it"
    assert s.rejected and s.reasons[0] == NO_STEPS and s.suggestions[0].startswith("record the task")
    assert score_session([], GOOD_FACTS).rejected  # nothing at all, however well described
    kept = PipelineSettings.build({"quality": {"reject_without_steps": False}})
    assert not score_session(scroll_only(), GOOD_FACTS, kept).rejected


def test_one_action_step_is_enough_for_the_step_rule() -> None:
    typed = events_of([("navigation", {"url": SHOP + "/", "transition": "typed"}),
                       *[("scroll", {"x": 0, "y": 100 * i}) for i in range(12)]])
    assert NO_STEPS not in score_session(typed, GOOD_FACTS).reasons
    assert NO_STEPS not in score_session(clean_session(), GOOD_FACTS).reasons


def test_empty_session() -> None:
    s = score_session([], SessionFacts())
    assert isinstance(s, QualityScores) and s.rejected and "No events were recorded." in s.reasons


def test_invalid_facts_are_invalid_input() -> None:
    with pytest.raises(InvalidInput) as info:
        score_session([], {"finished": "maybe", "screenshot_qualities": [1.5], "extra": 1})
    fields = {d["field"] for d in info.value.details}
    assert {"finished", "screenshot_qualities.0", "extra"} <= fields


# ----------------------------------------------------------------------------- settings

def test_yaml_defaults_match_model_defaults() -> None:
    assert PipelineSettings.from_file(DEFAULT_PIPELINE_FILE) == PipelineSettings()
    assert load_pipeline_settings() == PipelineSettings()


@pytest.mark.parametrize("body, field, words", [
    (("quality:\n  weights: {completeness: 0.5, selector_reliability: 0.5, screenshot_quality: 0.5,"
     " training_value: 0.5}\n"), "quality.weights", "sum to 1"),
    (("quality:\n  weights: {completeness: -0.2, selector_reliability: 0.6, screenshot_quality: 0.3,"
     " training_value: 0.3}\n"), "quality.weights.completeness", "greater than or equal"),
    ("quality:\n  reject_bellow: 0.5\n", "quality.reject_bellow", "Extra inputs"),
    ("quality:\n  min_actions: five\n", "quality.min_actions", "integer"),
    ("quality:\n  reject_below: '0.5'\n", "quality.reject_below", "number"),
    ("quality:\n  min_actions: 50\n  max_actions: 10\n", "quality", "must not exceed"),
    ("quality:\n  selector_ranks: {xpath: 0.99}\n", "quality.selector_ranks", "css_path"),
])
def test_bad_pipeline_yaml_names_file_and_field(tmp_path: Path, body: str, field: str,
                                                 words: str) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(body)
    with pytest.raises(SettingsError) as info:
        PipelineSettings.from_file(path)
    message = str(info.value)
    assert str(path) in message and f"  {field}: " in message and words in message
    with pytest.raises(ConfigError):
        load_pipeline_settings(path)


def test_missing_or_malformed_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="not found"):
        PipelineSettings.from_file(tmp_path / "absent.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(SettingsError, match="list.yaml: expected a mapping"):
        PipelineSettings.from_file(tmp_path / "list.yaml")


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("quality:\n  bogus: 1\n  min_actions: x\n  neutral: 2\n")
    message = str(pytest.raises(SettingsError, PipelineSettings.from_file, path).value)
    assert "3 problem(s)" in message


def test_settings_change_the_verdict() -> None:
    strict = PipelineSettings.build({"quality": {"reject_below": 0.99}})
    assert score_session(clean_session(), GOOD_FACTS, strict).rejected


def test_scoring_does_not_import_ray() -> None:
    code = "import sys, actors.context.scoring, actors.context; sys.exit('ray' in sys.modules)"
    root = Path(__file__).parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=root, check=False).returncode == 0
