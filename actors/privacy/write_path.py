"""Redaction of event batches on the shard's write path, before the group commit.

Batches reach a shard as EncodedEvent rows (target and payload already JSON text, the form
COPY needs). Each row is decoded, redacted as one PROTOCOL.md event (so the url, the title,
the target and a DOM snapshot are judged together: a password field's value goes whatever key
it sits under) and encoded again. Only the counts leave this module, per seq, so the privacy
audit counts exactly the events that were stored, not duplicates dropped at the commit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from actors.errors import InvalidInput
from actors.ingest.rows import EncodedEvent, redactable, redacted_row
from actors.privacy.redact import Redactor

__all__ = ["RedactedBatch", "RedactedSession", "redact_batch", "redact_session"]

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


# The client-written fields of a session (POST /v1/sessions): the task goes into every training
# prompt, so they are redacted as event fields are before the row is written.
_SESSION_TEXT = ("task", "user_agent")
_SESSION_JSON = ("client", "metadata")


class RedactedSession(NamedTuple):
    fields: dict[str, Any]
    counts: dict[str, int]  # type -> values redacted
    request_hash: bytes  # of the redacted fields: what a repeat of the create is compared by


def redact_session(redactor: Redactor, fields: Mapping[str, Any]) -> RedactedSession:
    """A session's fields with task, user agent, client and metadata redacted, and the hash a
    repeated create is compared with. The hash is of the redacted form, so no digest of the
    raw values is stored either (a phone number in a task is few enough bits to guess back)."""
    out = dict(fields)
    counts: dict[str, int] = {}
    for key in _SESSION_TEXT + _SESSION_JSON:
        value = out.get(key)
        if value is None:
            continue
        try:
            red, report = redactor.text(value) if key in _SESSION_TEXT else redactor.json(value)
        except (RecursionError, ValueError, TypeError) as exc:
            raise InvalidInput(f"the session's {key} could not be redacted ({type(exc).__name__}); "
                               "nothing was stored", [{"field": key, "error": "could not be redacted"}]) from None
        out[key] = red
        for kind, n in report.counts.items():
            counts[kind] = counts.get(kind, 0) + n
    canonical = json.dumps(out, sort_keys=True, default=str, ensure_ascii=False)
    return RedactedSession(out, counts, hashlib.sha256(b"redacted:" + canonical.encode()).digest())
