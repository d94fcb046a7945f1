"""The `ranking` dataset format: the same steps as the chat examples, the acted-on element
marked positive among the page's candidates; pure functions, no Ray."""

from __future__ import annotations

import json

from actors.training.dataset.formats import DatasetFormatSettings, build_examples
from actors.training.dataset.ranking import (
    RankingRow,
    candidate_from_element,
    dedupe_rows,
    describe_element,
    ranking_rows,
    ranking_stats,
)
from tests.unit.test_dataset_format import EMAIL, FORM, LINK, LOGIN, URL, el, session_events

SESSION = {"session_id": "s-1", "task": "Log in to my account"}


def test_one_row_per_chat_example_with_the_target_positive() -> None:
    events = session_events()
    rows = ranking_rows(SESSION, events, {2: "frames/s2.webp", 8: "frames/s8.webp"})
    examples = build_examples(SESSION, events, None)
    assert len(rows) == len(examples) == 6
    assert [r.action_type for r in rows] == ["navigate", "click", "type", "click", "submit", "key"]
    assert [r.step_index for r in rows] == list(range(6))
    nav, click, typed, login, submit, key = rows
    assert nav.positive_index is None and nav.value == URL and nav.candidates == []
    assert click.candidates[click.positive_index].text == describe_element(EMAIL)
    assert [c.text for c in click.candidates] == [describe_element(e) for e in (LINK, EMAIL, LOGIN, FORM)]
    assert sum(c.positive for c in login.candidates) == 1
    assert login.candidates[login.positive_index].selector == "testid=login-btn"
    assert typed.value == "[EMAIL]"  # a burst of typing is one step with its last value
    assert key.value == "Escape" and key.url == "https://shop.example/account"
    assert (click.screenshot, login.screenshot, nav.screenshot) == ("frames/s2.webp", "frames/s8.webp", None)
    # The history is the chat example's, compact JSON of the last k actions.
    assert login.previous_actions == [json.loads(json.dumps(a)) for a in login.previous_actions]
    assert json.loads(login.previous_actions[-1])["action"] == "input"
    assert submit.title == "Sign in" and submit.task == SESSION["task"]


def test_candidates_are_capped_and_the_positive_kept() -> None:
    many = [el("a", f"Link {i}", ("css", f"#l{i}")) for i in range(30)]
    target = el("button", "Buy", ("testid", "buy"))
    events = [{"seq": 0, "type": "dom_snapshot", "ts": 1, "url": URL, "elements": many},
              {"seq": 1, "type": "click", "ts": 2, "url": URL, "target": target}]
    (row,) = ranking_rows(SESSION, events, settings=DatasetFormatSettings(max_candidates=8))
    assert len(row.candidates) == 8 and row.positive_index is not None
    assert len({c.id for c in row.candidates}) == 8


def test_rows_round_trip_as_json_and_describe_key_attributes() -> None:
    field = {"tag": "INPUT", "attributes": {"type": "search", "placeholder": "Search", "name": "q"},
             "selectors": [{"kind": "placeholder", "value": "Search", "unique": True}]}
    text = describe_element(field)
    assert text.startswith('<input> "Search"') and "type=search" in text and "name=q" in text
    assert text.endswith("placeholder=Search")
    cand = candidate_from_element(field, positive=True)
    assert cand.id == candidate_from_element(dict(field)).id and cand.positive
    rows = ranking_rows(SESSION, session_events())
    again = [RankingRow.model_validate_json(json.dumps(r.model_dump(mode="json"))) for r in rows]
    assert again == rows


def test_dedupe_drops_the_same_step_of_another_session_and_stats_count_positives() -> None:
    rows = ranking_rows(SESSION, session_events())
    copies = ranking_rows({**SESSION, "session_id": "s-2"}, session_events())
    seen: set[str] = set()
    kept, dropped = dedupe_rows(rows, seen)
    kept2, dropped2 = dedupe_rows(copies, seen)
    assert (len(kept), dropped, kept2, dropped2) == (6, 0, [], 6)
    stats = ranking_stats(rows)
    assert stats["rows"] == 6 and stats["rows_with_positive"] == 4 and stats["candidates_max"] == 4
    assert ranking_stats([]) == {"rows": 0, "rows_with_positive": 0, "candidates_mean": 0.0,
                                 "candidates_max": 0}
