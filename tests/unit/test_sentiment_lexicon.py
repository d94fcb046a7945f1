"""Sentiment without a model: which typed values count, VADER's readings, the summary."""

from __future__ import annotations

from typing import Any

import pytest

from actors.sentiment.lexicon import TypedText, field_kind, label_of, lexicon_reading, typed_texts
from actors.sentiment.score import check_reading, summarize
from configs.cards import SentimentSettings


def _typed(seq: int, value: str, tag: str = "input", **attrs: str) -> dict[str, Any]:
    return {"seq": seq, "type": "input", "value": value,
            "target": {"tag": tag, "attributes": attrs, "selectors": [{"kind": "css", "value": f"#{tag}{attrs}"}]}}


@pytest.mark.parametrize(("tag", "attrs", "kind"), [
    ("textarea", {}, "message"),
    ("input", {"type": "search"}, "search"),
    ("input", {"name": "q"}, "search"),
    ("input", {"placeholder": "Your review"}, "message"),
    ("input", {"type": "text"}, "text"),
    ("input", {"type": "email"}, None),
    ("input", {"type": "password"}, None),
    ("input", {"autocomplete": "street-address"}, None),
    ("input", {"type": "number"}, None),
    ("select", {}, None),
    ("div", {"contenteditable": "true"}, "message"),
])
def test_field_kinds(tag: str, attrs: dict[str, str], kind: str | None) -> None:
    assert field_kind({"tag": tag, "attributes": attrs}) == kind


def test_typed_texts_keep_each_fields_last_free_text_value() -> None:
    settings = SentimentSettings()
    events = [
        _typed(0, "ter", "textarea"), _typed(1, "terrible service, [EMAIL] never answered", "textarea"),
        _typed(2, "broken", type="search"),           # one word is enough in a search box
        _typed(3, "Smith", type="text"),              # one word in a plain field: a name, not an opinion
        _typed(4, "great little kettle", type="text"),
        _typed(5, "hate it", type="password"),
        _typed(6, "1234 5678", type="text"),          # no letters
        {**_typed(7, "awful awful", "textarea", name="other"), "masked": True},
    ]
    texts = typed_texts(events, settings)
    assert [(t.seq, t.kind) for t in texts] == [(1, "message"), (2, "search"), (4, "text")]
    assert "[EMAIL]" not in texts[0].text and "never answered" in texts[0].text
    assert len(typed_texts(events, SentimentSettings(max_texts=1))) == 1


def test_lexicon_readings() -> None:
    bad, good, flat = (lexicon_reading(t) for t in ("this is terrible, nothing works",
                                                    "love it, great kettle", "blue kettle 1.7 litre"))
    assert bad.label == "negative" and bad.polarity < -0.3 and 0 < bad.confidence <= 1
    assert good.label == "positive" and good.polarity > 0.3
    assert flat.label == "neutral" and flat.polarity == 0 and flat.confidence == 1
    assert {bad.source, good.source, flat.source} == {"lexicon"}
    assert label_of(0.05) == "positive" and label_of(-0.049) == "neutral"


def test_summary_weights_by_confidence_and_keeps_no_text() -> None:
    texts = [TypedText(seq=1, kind="message", text="terrible, broken, awful"),
             TypedText(seq=2, kind="search", text="kettle")]
    summary = summarize(texts, [lexicon_reading(t.text) for t in texts])
    assert summary["label"] == "negative" and summary["negative"] == 1 and summary["neutral"] == 1
    assert summary["texts"] == 2 and [i["seq"] for i in summary["items"]] == [1, 2]
    assert "terrible" not in repr(summary)
    empty = summarize([], [])
    assert empty["label"] is None and empty["texts"] == 0


def test_model_readings_are_checked() -> None:
    assert check_reading({"polarity": -0.5, "confidence": 1}) == {"polarity": -0.5, "confidence": 1.0}
    for bad in ({"polarity": 2, "confidence": 1}, {"polarity": True, "confidence": 1}, {"polarity": "x"}):
        with pytest.raises(ValueError):
            check_reading(bad)
