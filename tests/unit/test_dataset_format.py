"""The openai-chat dataset format: pure functions over crafted sessions, no Ray."""

from __future__ import annotations

import copy
import json

import pytest
from pydantic import ValidationError

from actors.training.dataset.formats import (
    DatasetFormatSettings,
    best_selector,
    build_examples,
    dataset_stats,
    dedupe,
    estimate_text_tokens,
    estimate_tokens,
    split_by_session,
    validate_examples,
)

URL = "https://shop.example/login"
PNG = "data:image/png;base64,iVBORw0KGgo="


def el(tag: str, text: str, *selectors: tuple[str, str]) -> dict:
    return {"tag": tag, "text": text,
            "selectors": [{"kind": k, "value": v, "unique": True} for k, v in selectors]}


EMAIL = el("input", "", ("css", "form > input:nth-child(1)"), ("placeholder", "Email"))
LOGIN = el("button", "Log in", ("css", "#login"), ("testid", "login-btn"))
FORM = el("form", "", ("css", "form.login"))
LINK = el("a", "Help", ("text", "Help"))


def session_events() -> list[dict]:
    return [
        {"seq": 0, "type": "navigation", "ts": 1, "url": URL, "title": "Sign in",
         "transition": "typed"},
        {"seq": 1, "type": "dom_snapshot", "ts": 2, "url": URL,
         "elements": [LINK, EMAIL, LOGIN, FORM]},
        {"seq": 2, "type": "screenshot", "ts": 3, "url": URL, "screenshot_id": "s2"},
        {"seq": 3, "type": "click", "ts": 4, "url": URL, "target": EMAIL},
        {"seq": 4, "type": "input", "ts": 5, "url": URL, "target": EMAIL, "value": "[EM"},
        {"seq": 5, "type": "input", "ts": 6, "url": URL, "target": EMAIL, "value": "[EMAIL]",
         "masked": True},
        {"seq": 6, "type": "scroll", "ts": 7, "url": URL, "x": 0, "y": 300},
        {"seq": 7, "type": "keypress", "ts": 8, "url": URL, "key": "a"},
        {"seq": 8, "type": "screenshot", "ts": 9, "url": URL, "screenshot_id": "s8"},
        {"seq": 9, "type": "click", "ts": 10, "url": URL, "target": LOGIN},
        {"seq": 10, "type": "submit", "ts": 11, "url": URL, "target": FORM},
        {"seq": 11, "type": "navigation", "ts": 12, "url": "https://shop.example/account",
         "title": "Account", "transition": "form_submit"},
        {"seq": 12, "type": "keypress", "ts": 13, "url": "https://shop.example/account",
         "key": "Escape"},
    ]


SESSION = {"session_id": "s-1", "task": "Log in with your email"}
# navigate(typed), click email, input (two events merged), click login, submit, Escape
STEPS = ["navigate", "click", "input", "click", "submit", "keypress"]


def assistant(ex: dict) -> dict:
    return json.loads(ex["messages"][-1]["content"])


def user_text(ex: dict) -> str:
    content = ex["messages"][1]["content"]
    return content if isinstance(content, str) else content[0]["text"]


def good_example(i: int = 0, images: int = 0) -> dict:
    parts = [{"type": "text", "text": f"Task: step {i}"}] + [
        {"type": "image_url", "image_url": {"url": PNG}} for _ in range(images)]
    return {"messages": [{"role": "system", "content": "You are a web agent."},
                         {"role": "user", "content": parts if images else f"Task: step {i}"},
                         {"role": "assistant", "content": '{"action":"click"}'}]}


# ----------------------------------------------------------------------------- building

def test_one_example_per_action_step_with_the_recorded_action() -> None:
    examples = build_examples(SESSION, session_events(), None, DatasetFormatSettings())
    assert [assistant(ex)["action"] for ex in examples] == STEPS
    assert [[m["role"] for m in ex["messages"]] for ex in examples] == \
        [["system", "user", "assistant"]] * len(STEPS)
    nav, click_email, typed, click_login, submit, escape = map(assistant, examples)
    assert nav == {"action": "navigate", "url": URL}
    assert click_login == {"action": "click", "selector": "testid=login-btn",
                           "element_text": "Log in"}  # testid beats the css id
    assert click_email["selector"] == "placeholder=Email"
    assert typed["value"] == "[EMAIL]" and typed["selector"] == "placeholder=Email"
    assert "value" not in click_login and submit["selector"] == "css=form.login"
    assert escape == {"action": "keypress", "key": "Escape"}


def test_user_turn_holds_task_page_candidates_and_history() -> None:
    examples = build_examples(SESSION, session_events(), None)
    first, login = user_text(examples[0]), user_text(examples[3])
    assert "Task: Log in with your email" in first and "(none recorded)" in first
    assert f"URL: {URL}" in login and "Title: Sign in" in login
    assert '<button> "Log in" testid=login-btn' in login and "text=Help" in login
    assert '"action":"input"' in login and '"value":"[EMAIL]"' in login
    # after the form_submit navigation the old page's elements are gone
    assert "login-btn" not in user_text(examples[5]).split("Previous actions:")[0]


def test_last_k_actions_and_candidates_are_bounded() -> None:
    events = [{"seq": 0, "type": "dom_snapshot", "url": URL,
               "elements": [el("button", f"b{i}", ("testid", f"b{i}")) for i in range(30)]}]
    events += [{"seq": i, "type": "click", "url": URL,
                "target": el("button", f"b{i}", ("testid", f"b{i}"))} for i in range(1, 30)]
    settings = DatasetFormatSettings(last_k_actions=3, max_candidates=4)
    examples = build_examples(SESSION, events, None, settings)
    assert len(examples) == 29
    for ex in examples:
        text = user_text(ex)
        history = text.split("Previous actions:\n")[1].splitlines()
        assert len(history) <= 3
        cands = text.split("Candidate elements:\n")[1].split("\nPrevious")[0].splitlines()
        assert len(cands) <= 4
        assert assistant(ex)["selector"] in text.split("Previous actions:")[0]  # answer offered
    assert len(user_text(examples[-1]).split("Previous actions:\n")[1].splitlines()) == 3
    none = build_examples(SESSION, events, None, DatasetFormatSettings(last_k_actions=0))
    assert user_text(none[-1]).endswith("Previous actions:\n(none)")


def test_images_only_in_user_turns_capped_and_not_from_the_future() -> None:
    images = {2: PNG, 8: "https://store.example/s8.webp", 99: "https://store.example/late.png"}
    settings = DatasetFormatSettings(image_mode="object_url", max_images_per_example=1)
    examples = build_examples(SESSION, session_events(), images, settings)
    urls = [[p["image_url"]["url"] for p in ex["messages"][1]["content"]
             if isinstance(p, dict) and p["type"] == "image_url"]
            if isinstance(ex["messages"][1]["content"], list) else [] for ex in examples]
    assert urls == [[], [PNG], [PNG], ["https://store.example/s8.webp"],
                    ["https://store.example/s8.webp"], ["https://store.example/s8.webp"]]
    for ex in examples:
        assert isinstance(ex["messages"][0]["content"], str)
        assert isinstance(ex["messages"][2]["content"], str)
    two = build_examples(SESSION, session_events(), images,
                         DatasetFormatSettings(image_mode="data_url", max_images_per_example=2))
    assert len(two[-1]["messages"][1]["content"]) == 3  # text + 2 images
    off = build_examples(SESSION, session_events(), images, DatasetFormatSettings())
    assert all(isinstance(ex["messages"][1]["content"], str) for ex in off)  # image_mode none


def test_settings_are_strict() -> None:
    with pytest.raises(ValidationError):
        DatasetFormatSettings(max_images_per_example=11)
    with pytest.raises(ValidationError):
        DatasetFormatSettings(unknown=1)
    with pytest.raises(ValidationError):
        DatasetFormatSettings(image_mode="base64")


def test_best_selector_follows_the_ranking() -> None:
    assert best_selector(LOGIN) == "testid=login-btn"
    assert best_selector(el("a", "", ("xpath", "//a"), ("css", "#x"), ("role", "link"))) == \
        "role=link"
    assert best_selector({"tag": "div"}) is None


# ----------------------------------------------------------------------------- split, dedupe

def test_split_is_deterministic_by_session() -> None:
    ids = [f"s{i}" for i in range(40)]
    train, val = split_by_session(ids, 0.2, seed=7)
    rev_train, rev_val = split_by_session(list(reversed(ids)), 0.2, seed=7)
    assert (sorted(rev_train), sorted(rev_val)) == (sorted(train), sorted(val))
    assert len(val) == 8 and not set(train) & set(val) and set(train) | set(val) == set(ids)
    assert split_by_session(ids, 0.2, seed=7) == (train, val)
    assert split_by_session(ids, 0.2, seed=8)[1] != val
    assert all(split_by_session(["a", "b"], share, seed=1)[side]
               for share in (0.01, 0.99) for side in (0, 1))
    assert split_by_session(["a"], 0.5, seed=1) == (["a"], [])
    with pytest.raises(ValueError):
        split_by_session(ids, 1.0, seed=1)


def test_dedupe_drops_exact_copies_only() -> None:
    a, b = good_example(1), good_example(2)
    kept, dropped = dedupe([a, copy.deepcopy(a), b, a])
    assert kept == [a, b] and dropped == 2


# ----------------------------------------------------------------------------- validation

def test_a_good_dataset_passes() -> None:
    examples = [good_example(i, images=i % 3) for i in range(10)]
    assert validate_examples(examples, DatasetFormatSettings()) == []
    built = build_examples(SESSION, session_events(), {2: PNG},
                           DatasetFormatSettings(image_mode="data_url")) * 2
    assert validate_examples(built) == []


@pytest.mark.parametrize("breaker, code", [
    (lambda ex: ex["messages"][0].update(role="tool"), "bad_role"),
    (lambda ex: ex["messages"][2].update(content=[{"type": "image_url",
                                                   "image_url": {"url": PNG}}]),
     "image_in_assistant"),
    (lambda ex: ex["messages"][1].update(content=[{"type": "text", "text": "x"}] + [
        {"type": "image_url", "image_url": {"url": PNG}}] * 11), "too_many_images"),
    (lambda ex: ex["messages"][1].update(content="word " * 300_000), "too_many_tokens"),
    (lambda ex: ex["messages"].pop(), "last_not_assistant"),
    (lambda ex: ex["messages"][2].update(content="  "), "bad_assistant_content"),
    (lambda ex: ex["messages"][1].update(content=[{"type": "image_url", "image_url": {
        "url": "data:image/gif;base64,R0lGOD"}}]), "bad_image"),
])
def test_validation_catches_each_bad_case(breaker, code: str) -> None:
    examples = [good_example(i) for i in range(10)]
    breaker(examples[4])
    problems = validate_examples(examples, DatasetFormatSettings())
    assert {(p["index"], p["code"]) for p in problems} == {(4, code)}


def test_too_few_examples_is_a_dataset_problem() -> None:
    problems = validate_examples([good_example(i) for i in range(9)])
    assert problems == [{"index": None, "code": "too_few_examples",
                         "message": "9 examples, at least 10"}]


# ----------------------------------------------------------------------------- tokens, stats

def test_token_estimate_is_monotonic_and_close_on_a_known_string() -> None:
    # "The quick brown fox jumps over the lazy dog" is 9 tokens in cl100k_base and o200k_base.
    assert abs(estimate_text_tokens("The quick brown fox jumps over the lazy dog") - 9) <= 9 * 0.35
    small, big = good_example(0), good_example(0)
    big["messages"][1]["content"] = "Task: step 0 and a good deal more text"
    assert estimate_tokens(small) < estimate_tokens(big)
    with_image = good_example(0, images=1)
    low = copy.deepcopy(with_image)
    low["messages"][1]["content"][1]["image_url"]["detail"] = "low"
    assert estimate_tokens(with_image) - estimate_tokens(low) == 1105 - 85
    assert estimate_tokens(low) > estimate_tokens(small)


def test_dataset_stats() -> None:
    built = build_examples(SESSION, session_events(), {2: PNG},
                           DatasetFormatSettings(image_mode="data_url"))
    stats = dataset_stats(built)
    assert stats["examples"] == 6
    assert stats["action_types"] == {"click": 2, "input": 1, "keypress": 1, "navigate": 1,
                                     "submit": 1}
    t = stats["tokens"]
    assert t["min"] <= t["mean"] <= t["max"] and t["min"] <= t["p95"] <= t["max"]
    assert stats["images"] == {"total": 5, "examples_with_images": 5, "max_per_example": 1}
    assert dataset_stats([])["examples"] == 0
