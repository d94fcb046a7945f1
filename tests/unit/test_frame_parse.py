"""The one-parse fast path (actors/ingest/frames.py) answers exactly as the precise path does.

For every frame it vouches for, its rows equal (types included: 1 is not 1.0) what decoding the
frame and `parse_events` give; frames it cannot vouch for (escapes, non-finite numbers, large
frames, anything invalid) it hands back (None) for the precise path to answer and word.
"""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest

from actors.errors import TracemillError
from actors.ingest.events import parse_events
from actors.ingest.frames import validate_frame
from actors.ingest.rows import StoredEvent, encode_events
from actors.privacy.redact import Redactor
from actors.privacy.write_path import redact_batch
from cluster.bench.loadgen import EventFactory
from configs.settings import IngestLimits
from tests.support.pii_corpus import planted_corpus
from tests.unit.test_events import ONE_OF_EACH, element, event, realistic_click

LIMITS = IngestLimits()


def _frame(events: list[Any], **extra: Any) -> str:
    return json.dumps({"type": "events", "events": events, **extra})


def _precise(data: str, limits: IngestLimits = LIMITS) -> list[StoredEvent] | None:
    """The old path: decode, check the frame's shape, then parse_events; None when refused."""
    try:
        frame = json.loads(data, parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))
    except ValueError:
        return None
    if not isinstance(frame, dict) or frame.get("type") != "events" or "events" not in frame:
        return None
    try:
        return parse_events(frame["events"], limits)
    except TracemillError:
        return None


def _same(fast: list[StoredEvent], precise: list[StoredEvent]) -> None:
    assert repr(fast) == repr(precise)  # repr: 1 and 1.0, True and 1 differ


def test_every_event_kind_and_a_realistic_click_match_the_precise_path() -> None:
    events = [event(kind, seq=i) for i, kind in enumerate(sorted(ONE_OF_EACH))] + [realistic_click(99)]
    data = _frame(events)
    fast, precise = validate_frame(data, LIMITS), _precise(data)
    assert fast is not None and precise is not None
    _same(fast, precise)
    _same(validate_frame(data.encode(), LIMITS) or [], precise)  # a binary frame alike


def test_load_generator_frames_take_the_fast_path() -> None:
    for session in range(5):
        data = EventFactory(session).frame(session * 50, 50)
        fast = validate_frame(data, LIMITS)
        assert fast is not None and len(fast) == 50
        _same(fast, _precise(data) or [])


@pytest.mark.parametrize("data", [
    _frame([event("custom", data={"t": "a\u0000b"})]),  # NUL: only as an escape
    _frame([event("custom", data={"t": "\ud800"})]),  # a lone surrogate
    _frame([event("custom", data={"t": "caf\u00e9"})]),  # json.dumps escapes it: unsure, not wrong
    '{"type":"events","events":[{"seq":0,"type":"scroll","ts":1732262400123,"x":NaN,"y":0}]}',
    '{"type":"events","events":[{"seq":0,"type":"custom","ts":1732262400123,"name":"n","data":Infinity}]}',
    '{"type":"events","events":[{"seq":0,"type":"custom","ts":1732262400123,"name":"n","data":1e400}]}',
    _frame([event("custom", data={"t": "x" * (LIMITS.max_string_chars + 1)})]),  # deep in free JSON
    _frame([event("custom", data={"x" * (LIMITS.max_string_chars + 1): 1})]),  # a key too
    _frame([event("click", seq=-1)]),
    _frame([event("click")] * (LIMITS.max_events_per_batch + 1)),
    _frame([{"seq": 0, "type": "telepathy", "ts": 1732262400123}]),
    '{"type":"auth","api_key":"k"}',
    '{"type":"events"}',
    '[1, 2]',
    '{"type":"events","events":[',
])
def test_frames_it_cannot_vouch_for_go_the_precise_way(data: str) -> None:
    assert validate_frame(data, LIMITS) is None


def test_a_frame_large_enough_to_hide_an_oversize_event_goes_the_precise_way() -> None:
    small = IngestLimits(max_event_bytes=4096)
    data = _frame([realistic_click(i) for i in range(3)])
    assert len(data) * 5 > small.max_event_bytes
    assert validate_frame(data, small) is None
    assert validate_frame(data, LIMITS) is not None


def _mutants(seed: int, count: int) -> list[str]:
    """Valid frames, randomly cut, spliced and retyped: near misses of every kind."""
    rnd = random.Random(seed)
    base = [_frame([realistic_click(i), event(k, seq=i + 1)]) for i, k in enumerate(sorted(ONE_OF_EACH))]
    pieces = ['"', "1", "1.5", "-3", "null", "true", "[]", "{}", '"x"', ",", ":", '"seq":', '"type":"click"',
              '"ts":"2024-11-22T08:00:00Z"', '"ts":9', '"button":"left"', '"button":"up"', "1e15", " "]
    out = []
    for _ in range(count):
        s = rnd.choice(base)
        for _ in range(rnd.randint(1, 3)):
            at = rnd.randrange(len(s))
            cut = rnd.randint(0, 6)
            s = s[:at] + rnd.choice(pieces) + s[at + cut:]
        out.append(s)
    return out


def test_whatever_it_vouches_for_the_precise_path_accepts_identically() -> None:
    vouched = refused = 0
    for data in _mutants(3, 4_000):
        fast = validate_frame(data, LIMITS)
        precise = _precise(data)
        if fast is None:
            refused += 1
            continue
        vouched += 1
        assert precise is not None, data
        _same(fast, precise)
    assert vouched > 300 and refused > 300, (vouched, refused)


# --------------------------------------------------------------------------- redaction at the ingress


def _both_ways(events: list[dict[str, Any]], redactor: Redactor) -> tuple[Any, Any]:
    """Validated rows redacted where the ingress now does it, and the same rows encoded first
    and redacted as the shard did (decode, redact, encode): the old path is the oracle."""
    rows = parse_events(copy.deepcopy(events), LIMITS)
    old = redact_batch(Redactor(), encode_events(rows))
    return redact_batch(redactor, rows), old


def test_redacting_validated_rows_stores_what_the_shard_stored() -> None:
    _, planted = planted_corpus()
    events = planted + [realistic_click(100 + i) for i in range(3)]
    events += [event(kind, seq=200 + i) for i, kind in enumerate(sorted(ONE_OF_EACH))]
    redactor = Redactor()
    for _ in range(2):  # the second time the element memo answers
        new, old = _both_ways(events, redactor)
        assert new.events == old.events and new.counts == old.counts
        assert sum(sum(c.values()) for c in new.counts.values()) > 20


def test_a_remembered_target_still_judges_the_event_value() -> None:
    # The same password field twice: its value goes both times, though the second target
    # comes from the memo; a plain field's value is kept.
    password = element(tag="input", attributes={"type": "password", "name": "pw"})
    events = [event("input", seq=i, target=password, value="hunter2!Secret") for i in range(2)]
    events.append(event("input", seq=2, target=element(tag="input"), value="kettle"))
    new, old = _both_ways(events, Redactor())
    assert new.events == old.events and new.counts == old.counts == {0: {"PASSWORD": 1}, 1: {"PASSWORD": 1}}
    assert "hunter2" not in repr(new.events) and "kettle" in new.events[2].payload
