"""One parse per frame: an events frame validated straight from its bytes.

`parse_events` takes JSON already decoded into Python objects, then checks it (a fast pass,
and a precise one for the few events whose encoding looks suspect). An ingress replica used to
decode each frame into dicts and lists first and then validate them: every event was built
twice. Here pydantic-core parses the bytes and validates in one Rust pass
(`SchemaValidator.validate_json`), which measured faster than decoding alone
(`tracemill bench ingest --stages`).

This is a fast path, not a second set of rules. It answers only for frames whose every check
it can vouch for; for anything else it answers None and the caller takes the precise path
(decode, then `parse_events`), which also words every error. It vouches when:

* the frame is small enough that no event in it can exceed `max_event_bytes`: an event's size
  is its compact JSON as decoded, and re-encoding can grow a number at most 4.5-fold ("1e15"
  becomes "1000000000000000.0") while nothing else grows, so a frame of at most a fifth of the
  limit holds no oversize event;
* it has no `\\u` escape (the only way JSON spells NUL or a lone surrogate, both refused) and no
  `NaN` or `Infinity` (not JSON: the precise path refuses the frame);
* the validator, built from the same declared types with every string bounded and free-form
  JSON walked (only the NUL search left out: see above), accepts it, and the batch holds at
  most `max_events_per_batch` events.

msgspec was not used: it is not a dependency, and these types (discriminated TypedDicts with
runtime limits) already compile to one pydantic-core validator.
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic_core import SchemaValidator, core_schema

from actors.ingest.events import batch_schema
from actors.ingest.rows import StoredEvent, stored_event
from configs.settings import IngestLimits

__all__ = ["validate_frame"]

# The most a number's re-encoding outgrows its bytes as received (see the module docstring).
_GROWTH = 5


def validate_frame(data: str | bytes, limits: IngestLimits) -> list[StoredEvent] | None:
    """A WebSocket events frame ({"type": "events", "events": [...]}) as rows, or None when
    this fast path cannot vouch for the frame."""
    size = len(data) if isinstance(data, bytes) or data.isascii() else 4 * len(data)
    if size * _GROWTH > limits.max_event_bytes or _unsure(data):
        return None
    try:
        frame: dict[str, Any] = _validator(limits.max_string_chars, limits.max_html_chars).validate_json(data)
    except ValueError:  # ValidationError, or a text frame that is not valid Unicode
        return None
    events: list[dict[str, Any]] = frame["events"]
    if len(events) > limits.max_events_per_batch:
        return None
    return [stored_event(event) for event in events]


def _unsure(data: str | bytes) -> bool:
    if isinstance(data, str):
        return "\\u" in data or "NaN" in data or "Infinity" in data
    return b"\\u" in data or b"NaN" in data or b"Infinity" in data


@functools.lru_cache(maxsize=16)
def _validator(max_string: int, max_html: int) -> SchemaValidator:
    events = batch_schema({"text": max_string, "html": max_html}, nul_check=False, walk_json=True)
    return SchemaValidator(core_schema.typed_dict_schema({
        "type": core_schema.typed_dict_field(core_schema.literal_schema(["events"])),
        "events": core_schema.typed_dict_field(events),
    }, extra_behavior="ignore"))
