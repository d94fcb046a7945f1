"""Redaction of event batches on the shard's write path, before the group commit.

Batches reach a shard as EncodedEvent rows (target and payload already JSON text, the form
COPY needs). Each row is decoded, redacted as one PROTOCOL.md event (so the url, the title,
the target and a DOM snapshot are judged together: a password field's value goes whatever key
it sits under) and encoded again. Only the counts leave this module, per seq, so the privacy
audit counts exactly the events that were stored, not duplicates dropped at the commit.
"""

from __future__ import annotations

from collections.abc import Sequence

from actors.errors import InvalidInput
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
    """The rows redacted, or InvalidInput for the whole batch when one cannot be: nothing of
    a batch is stored unless all of it was redacted. Pure CPU work, so the shard runs it in a
    worker thread (every pattern is linear: cluster/bench/redaction.py)."""
    out: list[EncodedEvent] = []
    counts: RedactionCounts = {}
    for row in rows:
        try:
            redacted, report = redactor.event(redactable(row))
        except (RecursionError, ValueError, TypeError) as exc:
            raise InvalidInput(
                f"event seq {row.seq} could not be redacted ({type(exc).__name__}); the batch was not stored",
                [{"field": f"seq {row.seq}", "error": "could not be redacted"}],
            ) from None
        if report.counts:
            counts[row.seq] = dict(report.counts)
        out.append(redacted_row(row, redacted))
    return RedactedBatch((out, counts))
