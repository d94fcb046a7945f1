"""Stored `interactions` rows and PROTOCOL.md event dicts, both ways: the one place that knows
how an event is split into columns.

A validated event is stored as seq, type, ts, url, target (the Element it acted on) and
payload (every other field of its type), with null fields dropped. On the way in, the ingress
turns validated dicts into StoredEvents and encodes them (EncodedEvent: target and payload as
JSON text, the form COPY takes); the shard's write path decodes each row into an event to
redact it and encodes it again. On the way out, readers (processing tasks, the results API,
dataset building) turn rows back into the event dicts clients sent, after redaction.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from pydantic_core import from_json, to_json

__all__ = [
    "StoredEvent", "EncodedEvent", "stored_event", "encode_events", "redactable", "redacted_row",
    "as_event", "epoch_ms", "jsonb",
]


class StoredEvent(NamedTuple):
    """One row of the `interactions` table; plain data so it pickles small between Ray processes.

    `target` is the Element and `payload` every other validated field of the event, both
    JSON-able with null fields dropped. A NamedTuple rather than a slotted dataclass: it
    unpickles about twice as fast, and every batch crosses a process boundary.
    """

    seq: int
    type: str
    ts: datetime
    url: str | None
    target: dict[str, Any] | None
    payload: dict[str, Any]


class EncodedEvent(NamedTuple):
    """A StoredEvent with `target` and `payload` already JSON text: what an ingress replica
    sends a shard. Strings pickle at memcpy speed, while nested dicts cost ~35 µs an event
    to pickle and unpickle (measured), and the shard needs the text for COPY anyway."""

    seq: int
    type: str
    ts: datetime
    url: str | None
    target: str | None
    payload: str


# --------------------------------------------------------------------------- event -> row


def stored_event(event: dict[str, Any]) -> StoredEvent:
    """A validated event dict (consumed) as its row, null fields dropped."""
    seq, kind, ts = event.pop("seq"), event.pop("type"), event.pop("ts")
    url, target = event.pop("url", None), event.pop("target", None)
    if None in event.values():
        event = _drop_nulls(event)
    if target is not None:
        target = _element_row(target)
    elif kind == "dom_snapshot":
        event["elements"] = [_element_row(e) for e in event["elements"]]
    return StoredEvent(seq, kind, ts, url, target, event)


def _element_row(element: dict[str, Any]) -> dict[str, Any]:
    if None in element.values():
        element = _drop_nulls(element)
    selectors = element.get("selectors")
    if selectors:
        element["selectors"] = [
            _drop_nulls(s) if s.get("unique", False) is None else s for s in selectors
        ]
    return element


def _drop_nulls(mapping: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in mapping.items() if value is not None}


def encode_events(events: Sequence[StoredEvent]) -> list[EncodedEvent]:
    return [_encoded(e.seq, e.type, e.ts, e.url, e.target, e.payload) for e in events]


def _encoded(
    seq: int, kind: str, ts: datetime, url: str | None, target: dict[str, Any] | None, payload: dict[str, Any]
) -> EncodedEvent:
    return EncodedEvent(
        seq, kind, ts, url, None if target is None else to_json(target).decode(), to_json(payload).decode()
    )


# --------------------------------------------------------------------------- row -> event


def _event(head: dict[str, Any], url: str | None, target: str | None, payload: str) -> dict[str, Any]:
    """`head` followed by url, target and the type's own fields: the order clients send."""
    if url is not None:
        head["url"] = url
    if target is not None:
        head["target"] = from_json(target)
    head.update(from_json(payload))
    return head


def redactable(row: EncodedEvent) -> dict[str, Any]:
    """An encoded row as the event the redactor judges: type, url, target and the type's
    fields together (seq and ts say nothing it could redact); `redacted_row` undoes it."""
    return _event({"type": row.type}, row.url, row.target, row.payload)


def redacted_row(row: EncodedEvent, event: dict[str, Any]) -> EncodedEvent:
    """`row` with its content replaced by the redacted `event` (consumed); seq, type and ts stay."""
    url, target = event.pop("url", None), event.pop("target", None)
    event.pop("type", None)
    return _encoded(row.seq, row.type, row.ts, url, target, event)


def as_event(row: Mapping[str, Any]) -> dict[str, Any]:
    """An `interactions` row read back (target and payload as JSON text) as the event dict
    clients sent, after redaction: seq, type, ts (epoch ms), url, target, then the type's own
    fields."""
    head: dict[str, Any] = {"seq": row["seq"], "type": row["type"], "ts": epoch_ms(row["ts"])}
    return _event(head, row["url"], row["target"], row["payload"])


def epoch_ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


def jsonb(value: Any) -> Any:
    """A jsonb column's value: asyncpg hands jsonb over as text (no codec is registered)."""
    return json.loads(value) if isinstance(value, str) else value
