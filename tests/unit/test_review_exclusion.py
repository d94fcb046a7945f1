"""A step a reviewer flagged makes no example; the steps around it keep their history."""

from __future__ import annotations

from actors.training.dataset.formats import action_steps
from actors.training.dataset.ranking import ranking_rows


def _click(seq: int, text: str) -> dict:
    return {"seq": seq, "type": "click", "ts": 1_700_000_000_000 + seq * 500, "url": "https://shop.example/",
            "target": {"tag": "button", "text": text,
                       "selectors": [{"kind": "testid", "value": f"b{seq}", "unique": True}]}}


EVENTS = [{"seq": 0, "type": "navigation", "ts": 1_700_000_000_000, "url": "https://shop.example/", "title": "Shop"},
          _click(1, "One"), _click(2, "Two"), _click(3, "Three")]


def test_flagged_steps_are_skipped_and_stay_in_the_history() -> None:
    session = {"session_id": "s", "task": "t"}
    all_steps = action_steps(session, EVENTS)
    kept = action_steps({**session, "skip_seqs": frozenset({2})}, EVENTS)
    assert [s.seq for s in all_steps] == [1, 2, 3] and [s.seq for s in kept] == [1, 3]
    assert kept[1].history == all_steps[2].history  # what happened before step 3 is unchanged
    assert len(ranking_rows({**session, "skip_seqs": frozenset({1, 3})}, EVENTS)) == 1
    assert action_steps({**session, "skip_seqs": frozenset()}, EVENTS) == all_steps
