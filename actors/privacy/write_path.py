"""Redaction of event batches on the shard's write path, before the group commit.

Batches reach a shard as EncodedEvent rows (target and payload already JSON text, the form
COPY needs). Each row is decoded, redacted as one PROTOCOL.md event (so the url, the title,
the target and a DOM snapshot are judged together: a password field's value goes whatever key
it sits under) and encoded again. Only the counts leave this module, per seq, so the privacy
audit counts exactly the events that were stored, not duplicates dropped at the commit.
"""

from __future__ import annotations

from collections.abc import Sequence

from actors.ingest.rows import EncodedEvent, redactable, redacted_row
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


def redact_batch(redactor: Redactor, rows: Sequence[EncodedEvent]) -> RedactedBatch:
    out: list[EncodedEvent] = []
    counts: RedactionCounts = {}
    for row in rows:
        redacted, report = redactor.event(redactable(row))
        if report.counts:
            counts[row.seq] = dict(report.counts)
        out.append(redacted_row(row, redacted))
    return RedactedBatch((out, counts))
