"""Redaction of event batches on the shard's write path, before the group commit.

Batches reach a shard as EncodedEvent rows (target and payload already JSON text, the form
COPY needs). Each row is decoded, redacted as one PROTOCOL.md event (so the url, the title,
the target and a DOM snapshot are judged together: a password field's value goes whatever key
it sits under) and encoded again. Only the counts leave this module, per seq, so the privacy
audit counts exactly the events that were stored, not duplicates dropped at the commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic_core import from_json, to_json

from actors.ingest.events import EncodedEvent
from actors.privacy.redact import Redactor

__all__ = ["RedactedBatch", "redact_batch"]

# seq → {type: count}, only for events in which something was redacted
RedactionCounts = dict[int, dict[str, int]]


class RedactedBatch(tuple[list[EncodedEvent], RedactionCounts]):
    """(events, counts): the redacted rows and what was taken out of which seq."""

    @property
    def events(self) -> list[EncodedEvent]:
        return self[0]

    @property
    def counts(self) -> RedactionCounts:
        return self[1]


def _as_event(row: EncodedEvent) -> dict[str, Any]:
    event: dict[str, Any] = {"type": row.type}
    if row.url is not None:
        event["url"] = row.url
    if row.target is not None:
        event["target"] = from_json(row.target)
    event.update(from_json(row.payload))
    return event


def _as_row(row: EncodedEvent, event: dict[str, Any]) -> EncodedEvent:
    url = event.pop("url", None)
    target = event.pop("target", None)
    event.pop("type", None)
    return EncodedEvent(
        row.seq, row.type, row.ts, url,
        None if target is None else to_json(target).decode(),
        to_json(event).decode(),
    )


def redact_batch(redactor: Redactor, rows: Sequence[EncodedEvent]) -> RedactedBatch:
    out: list[EncodedEvent] = []
    counts: RedactionCounts = {}
    for row in rows:
        redacted, report = redactor.event(_as_event(row))
        if report.counts:
            counts[row.seq] = dict(report.counts)
        out.append(_as_row(row, redacted))
    return RedactedBatch((out, counts))
