"""Unit tests of the event contract: actors.ingest.events.parse_events and its types.

Run as a script for the parse cost per event:
    cd /work/main && PYTHONPATH=. python tests/unit/test_events.py
"""

from __future__ import annotations

import copy
import json
import pickle
from datetime import datetime, timezone
from typing import Any

import pytest

from actors.errors import InvalidInput, PayloadTooLarge
from actors.ingest.events import EVENT_TYPES, parse_events, parse_timestamp
from actors.ingest.rows import StoredEvent
from configs.settings import IngestLimits

LIMITS = IngestLimits()
TS = 1732262400123
TS_UTC = datetime(2024, 11, 22, 8, 0, 0, 123000, tzinfo=timezone.utc)


def element(**extra: Any) -> dict[str, Any]:
    return {"tag": "button", "text": "Add to cart", **extra}


def realistic_click(seq: int) -> dict[str, Any]:
    """A click as the extension records it: full Element with selectors, bbox and context."""
    return {
        "seq": seq, "type": "click", "ts": TS + seq * 37,
        "url": "https://shop.example/p/42?ref=home", "title": "Blue kettle - Shop Example",
        "x": 612, "y": 380.5, "button": 0,
        "target": {
            "tag": "button", "text": "Add to cart",
            "attributes": {
                "id": "add-42", "name": "add", "role": "button", "type": "submit",
                "aria-label": "Add Blue kettle to cart", "data-testid": "add-to-cart",
                "class": "btn btn-primary",
            },
            "selectors": [
                {"kind": "testid", "value": "add-to-cart", "unique": True},
                {"kind": "role", "value": 'button[name="Add to cart"]', "unique": True},
                {"kind": "text", "value": "Add to cart", "unique": False},
                {"kind": "css", "value": "#add-42", "unique": True},
                {"kind": "xpath", "value": "/html/body/main/div[2]/form/button[1]", "unique": True},
            ],
            "bbox": {"x": 600, "y": 370, "width": 120, "height": 32},
            "context": {
                "ancestors": [{"tag": "form", "id": "buy"}, {"tag": "div", "class": "product"}],
                "nearby": [
                    {"tag": "span", "text": "$24.99", "relation": "left"},
                    {"tag": "select", "text": "Qty 1", "relation": "above"},
                ],
                "form": {"id": "buy", "action": "/cart/add", "fields": ["qty", "variant"]},
            },
            "sensitive": False,
        },
    }


ONE_OF_EACH: dict[str, dict[str, Any]] = {
    "navigation": {
        "url": "https://a.example/", "referrer": "https://b.example/", "transition": "typed",
    },
    "click": {"target": element(), "x": 1, "y": 2.5, "button": 2},
    "dblclick": {"target": element()},
    "contextmenu": {"target": element(), "button": 2},
    "input": {"target": element(tag="input"), "value": "kettle"},
    "change": {"target": element(tag="input"), "value": "***", "masked": True},
    "select": {"target": element(tag="select"), "value": "2"},
    "submit": {"target": element(tag="form")},
    "keypress": {"key": "Enter", "modifiers": ["Shift"], "target": element()},
    "scroll": {"x": 0, "y": 1200},
    "modal": {"state": "opened", "target": element(tag="dialog")},
    "dom_snapshot": {"elements": [element(), element(tag="a")], "html": "<main>...</main>"},
    "screenshot": {"screenshot_id": "s-0001", "trigger": "click"},
    "custom": {"name": "cart_total", "data": {"total": 24.99, "items": [1, None, "x"]}},
}


BAD_SELECTOR = {"kind": "id", "value": "add-42"}  # "id" is not a selector kind


def event(kind: str = "click", seq: int = 0, **fields: Any) -> dict[str, Any]:
    return {"seq": seq, "type": kind, "ts": TS, **copy.deepcopy(ONE_OF_EACH[kind]), **fields}


def problems(raw: object, limits: IngestLimits = LIMITS) -> list[dict[str, Any]]:
    with pytest.raises(InvalidInput) as caught:
        parse_events(raw, limits)
    for detail in caught.value.details:
        assert set(detail) == {"index", "seq", "field", "error"}
    return caught.value.details


def only_problem(raw_event: dict[str, Any], limits: IngestLimits = LIMITS) -> dict[str, Any]:
    [detail] = problems([raw_event], limits)
    return detail


# --------------------------------------------------------------------------- accepted


def test_button_names_are_stored_as_numbers() -> None:
    [row] = parse_events([event("click", seq=1, target=element(), button="right")], LIMITS)
    assert row.payload["button"] == 2


def test_every_kind_in_the_protocol_has_an_example() -> None:
    assert set(ONE_OF_EACH) == set(EVENT_TYPES)


@pytest.mark.parametrize("kind", sorted(ONE_OF_EACH))
def test_each_event_kind_is_accepted(kind: str) -> None:
    [row] = parse_events([event(kind, seq=7)], LIMITS)
    assert (row.seq, row.type, row.ts) == (7, kind, TS_UTC)
    fields = ONE_OF_EACH[kind]
    assert row.url == fields.get("url")
    assert row.target == fields.get("target")
    expected = {k: v for k, v in fields.items() if k not in ("url", "target")}
    assert row.payload == json.loads(json.dumps(expected))  # ints where floats are due are fine


def test_realistic_click_is_split_into_columns_target_and_payload() -> None:
    raw = realistic_click(3)
    [row] = parse_events([raw], LIMITS)
    assert row.url == raw["url"]
    assert row.target == raw["target"]
    assert row.payload == {"title": raw["title"], "x": 612, "y": 380.5, "button": 0}
    assert not {"seq", "type", "ts", "url", "target"} & set(row.payload)


def test_empty_batch_is_fine() -> None:
    assert parse_events([], LIMITS) == []


@pytest.mark.parametrize(
    "ts",
    [TS, "2024-11-22T08:00:00.123Z", "2024-11-22T10:00:00.123+02:00", "2024-11-22t08:00:00.123z",
     "2024-11-22 03:00:00.123-05:00", "2024-11-22T08:00:00.123000000Z"],
)
def test_ts_int_and_rfc3339_normalise_to_aware_utc(ts: int | str) -> None:
    [row] = parse_events([event(ts=ts)], LIMITS)
    assert row.ts == TS_UTC
    assert row.ts.utcoffset() is not None and row.ts.utcoffset().total_seconds() == 0


def test_unknown_fields_are_dropped_everywhere() -> None:
    selectors = [{"kind": "css", "value": "a", "z": 1}]
    raw = event(extra="x", target=element(extra="y", selectors=selectors))
    [row] = parse_events([raw], LIMITS)
    assert "extra" not in row.payload and "extra" not in (row.target or {})
    assert row.target is not None and row.target["selectors"] == [{"kind": "css", "value": "a"}]


def test_nulls_of_declared_fields_are_dropped_but_data_nulls_kept() -> None:
    target = element(text=None, bbox=None, attributes={"disabled": None},
                     selectors=[{"kind": "css", "value": "a", "unique": None}])
    raw = event(title=None, x=None, target=target)
    raw["target"]["context"] = {"form": None}
    [row] = parse_events([raw], LIMITS)
    assert "title" not in row.payload and "x" not in row.payload
    assert row.target == {"tag": "button", "attributes": {"disabled": None},
                          "selectors": [{"kind": "css", "value": "a"}], "context": {"form": None}}


def test_dom_snapshot_elements_drop_nulls_too() -> None:
    [row] = parse_events([event("dom_snapshot", elements=[element(text=None)])], LIMITS)
    assert row.payload["elements"] == [{"tag": "button"}]


def test_stored_event_pickles_and_is_frozen() -> None:
    [row] = parse_events([realistic_click(0)], LIMITS)
    clone = pickle.loads(pickle.dumps(row))
    assert clone == row and isinstance(clone, StoredEvent)
    assert not hasattr(row, "__dict__")  # a tuple: small and fast across Ray process boundaries
    with pytest.raises(AttributeError):
        row.seq = 1  # type: ignore[misc]
    json.dumps(row.payload), json.dumps(row.target)  # JSON-able as stored


# --------------------------------------------------------------------------- rejected


@pytest.mark.parametrize(
    ("seq", "reported"),
    [
        (-1, -1), (True, None), (1.5, None), (1.0, None), ("3", None), (None, None),
        (2**53 + 1, 2**53 + 1),
    ],
)
def test_bad_seq(seq: object, reported: int | None) -> None:
    detail = only_problem({**event(), "seq": seq})
    assert detail == {"index": 0, "seq": reported, "field": "seq", "error": detail["error"]}


def test_missing_seq_is_required() -> None:
    raw = event()
    del raw["seq"]
    assert only_problem(raw)["field"] == "seq"


@pytest.mark.parametrize(
    "ts",
    [
        1732262400,  # seconds, not milliseconds
        1732262400123.5, True, None, "2024-11-22T08:00:00", "22/11/2024",
        "2024-02-30T00:00:00Z", "2150-01-01T00:00:00Z",
    ],
)
def test_bad_ts(ts: object) -> None:
    detail = only_problem(event(ts=ts))
    assert (detail["field"], detail["seq"]) == ("ts", 0)


def test_unknown_type_names_the_choices_without_echoing_input() -> None:
    detail = only_problem(event(type="secret-kind"))
    assert detail["field"] == "type" and "unknown event type" in detail["error"]
    assert "click" in detail["error"] and "secret-kind" not in detail["error"]


@pytest.mark.parametrize("raw", [{"seq": 4, "ts": TS}, {"seq": 4, "type": None, "ts": TS}])
def test_missing_type(raw: dict[str, Any]) -> None:
    detail = only_problem(raw)
    assert (detail["index"], detail["seq"], detail["field"]) == (0, 4, "type")


@pytest.mark.parametrize("raw", ["click", 3, None, ["seq"]])
def test_event_that_is_not_an_object(raw: object) -> None:
    [detail] = problems([raw])
    assert detail == {"index": 0, "seq": None, "field": None, "error": "must be a JSON object"}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"x": "612"}, "x"),
        ({"x": True}, "x"),
        ({"button": 7}, "button"),
        ({"button": "thumb"}, "button"),
        ({"url": 5}, "url"),
        ({"target": "button"}, "target"),
        ({"target": element(tag=5)}, "target.tag"),
        ({"target": element(attributes={"id": 5})}, "target.attributes.id"),
        ({"target": element(selectors=[{"kind": "css", "value": "a"}, BAD_SELECTOR])},
         "target.selectors.1.kind"),
        ({"target": element(bbox={"x": 1, "y": 2, "width": -1, "height": 3})}, "target.bbox.width"),
        ({"target": element(sensitive="yes")}, "target.sensitive"),
    ],
)
def test_wrong_typed_fields_name_their_path(fields: dict[str, Any], field: str) -> None:
    detail = only_problem(event("click", seq=9, **fields))
    assert (detail["index"], detail["seq"], detail["field"]) == (0, 9, field)


@pytest.mark.parametrize(
    ("kind", "fields", "field"),
    [
        ("navigation", {"url": None}, "url"),
        ("navigation", {"transition": "teleport"}, "transition"),
        ("keypress", {"modifiers": ["Shift"] * 9}, "modifiers"),
        ("scroll", {"y": None}, "y"),
        ("modal", {"state": "ajar"}, "state"),
        ("dom_snapshot", {"elements": [{"text": "no tag"}]}, "elements.0.tag"),
        ("screenshot", {"screenshot_id": None}, "screenshot_id"),
        ("custom", {"name": ["x"]}, "name"),
    ],
)
def test_kind_specific_fields_are_checked(kind: str, fields: dict[str, Any], field: str) -> None:
    assert only_problem(event(kind, **fields))["field"] == field


def test_error_text_never_echoes_input() -> None:
    secret = "jane.doe@example.com"
    raw = event(x=secret, target=element(tag=[secret], attributes={"id": [secret]}), type="click")
    for detail in problems([raw, {**raw, "type": secret}]):
        assert secret not in detail["error"]


def test_element_bounds() -> None:
    many_attributes = {f"a{i}": "v" for i in range(65)}
    many_selectors = [{"kind": "css", "value": "a"}] * 33
    detail = only_problem(event(target=element(attributes=many_attributes)))
    assert detail["field"] == "target.attributes"
    detail = only_problem(event(target=element(selectors=many_selectors)))
    assert detail["field"] == "target.selectors"


def test_oversized_strings_follow_runtime_limits() -> None:
    small = IngestLimits(max_string_chars=16, max_html_chars=1024)
    assert parse_events([event(title="x" * 16)], small)
    detail = only_problem(event(title="x" * 17), small)
    assert detail["field"] == "title" and "16" in detail["error"]
    assert parse_events([event(title="x" * 17)], LIMITS)  # other limits, other validator
    assert parse_events([event("dom_snapshot", html="<p>" + "x" * 1000)], small)
    assert only_problem(event("dom_snapshot", html="x" * 1025), small)["field"] == "html"
    detail = only_problem(event(target=element(attributes={"k" * 17: "v"})), small)
    assert detail["field"] == "target.attributes" and "k" * 17 not in detail["error"]


def test_free_form_json_is_bounded_too() -> None:
    small = IngestLimits(max_string_chars=16)
    context = {"nearby": [{"text": "x" * 17}]}
    detail = only_problem(event(target=element(context=context)), small)
    assert detail["field"] == "target.context.nearby"
    assert only_problem(event("custom", data={"deep": ["x" * 17]}), small)["field"] == "data"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"title": "a\x00b"}, "title"),
        ({"target": element(context={"note": "a\x00b"})}, "target.context.note"),
        ({"target": element(context={"n": float("nan")})}, "target.context.n"),
        ({"target": element(context={"n": [float("inf")]})}, "target.context.n"),
        ({"x": float("nan")}, "x"),
    ],
)
def test_nul_and_non_finite_numbers_are_rejected(fields: dict[str, Any], field: str) -> None:
    assert only_problem(event(**fields))["field"] == field


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"title": "\ud800"}, "title"),
        ({"target": element(context={"a": ["\udfff"]})}, "target.context.a"),
        ({"ignored": "\ud800"}, None),  # not stored, but the event cannot be measured either
    ],
)
def test_lone_surrogates_are_rejected(fields: dict[str, Any], field: str | None) -> None:
    assert only_problem(event(**fields))["field"] == field


def test_oversized_event() -> None:
    limits = IngestLimits(max_event_bytes=1024)
    detail = only_problem(event("custom", data=["x" * 100] * 10), limits)
    assert detail["field"] is None and "1024" in detail["error"]


def test_too_many_events() -> None:
    with pytest.raises(PayloadTooLarge):
        parse_events([event(seq=i) for i in range(4)], IngestLimits(max_events_per_batch=3))


@pytest.mark.parametrize("raw", [{"events": []}, None, "[]", event()])
def test_events_not_an_array(raw: object) -> None:
    expected = {"index": None, "seq": None, "field": "events", "error": "must be an array"}
    assert problems(raw) == [expected]


def test_one_bad_event_rejects_the_whole_batch() -> None:
    raw = [event(seq=0), event(seq=1, x="bad"), event(seq=2)]
    with pytest.raises(InvalidInput) as caught:
        parse_events(raw, LIMITS)
    assert caught.value.message == "1 of 3 events are invalid; the batch was not stored"
    error = "Input should be a valid number"
    assert caught.value.details == [{"index": 1, "seq": 1, "field": "x", "error": error}]


def test_every_problem_of_every_event_is_reported_in_order() -> None:
    small = IngestLimits(max_string_chars=16, max_event_bytes=1024)
    raw = [
        event("custom", seq=0, data=["x" * 100] * 20),  # oversized
        event(seq=1),
        {"seq": 2, "type": "click", "ts": True, "target": element(context={"a": "x" * 40})},
        event(seq=3, type="nope"),
        event(seq=-4, x="1"),
    ]
    details = problems(raw, small)
    assert [(d["index"], d["seq"], d["field"]) for d in details] == [
        (0, 0, None), (2, 2, "ts"), (2, 2, "target.context.a"), (3, 3, "type"),
        (4, -4, "seq"), (4, -4, "x"),
    ]
    with pytest.raises(InvalidInput, match="^4 of 5 events are invalid"):
        parse_events(raw, small)


def test_parse_timestamp_is_the_shared_rule() -> None:
    assert parse_timestamp(TS) == TS_UTC == parse_timestamp("2024-11-22T08:00:00.123Z")
    assert parse_timestamp(TS_UTC) is not None
    for bad in (True, 1.5, "yesterday", datetime(2024, 1, 1), 10**20):
        with pytest.raises(ValueError):
            parse_timestamp(bad)


def _benchmark(batches: int = 400, repeats: int = 5) -> None:
    import time

    batch = json.loads(json.dumps([realistic_click(i) for i in range(50)]))
    parse_events(batch, LIMITS)  # build and cache the validators first
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(batches):
            parse_events(batch, LIMITS)
        best = min(best, (time.perf_counter() - start) / (batches * len(batch)))
    size = len(json.dumps(batch[0]))
    print(f"parse_events: {best * 1e6:.1f} us/event, best of {repeats} x {batches} batches "
          f"of 50 clicks ({size} bytes of JSON each)")


if __name__ == "__main__":
    _benchmark()
