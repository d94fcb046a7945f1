"""Redaction of event batches on the write path, before anything is stored.

An ingress replica redacts each validated batch (StoredEvent rows, still dicts) in a worker
thread and encodes it once (EncodedEvent: target and payload as the JSON text COPY takes):
replicas scale out, and the shard's single loop then only orders, de-duplicates, commits and
acks. Each event is redacted as one PROTOCOL.md event (so the url, the title, the target and a
DOM snapshot are judged together: a password field's value goes whatever key it sits under).
A shard handed rows that are not a RedactedBatch (a caller from before this, say during a
rolling deploy) decodes and redacts them itself. Only the counts leave this module, per seq,
so the privacy audit counts exactly the events that were stored, not duplicates dropped at
the commit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from pydantic_core import to_json

from actors.errors import InvalidInput
from actors.ingest.rows import EncodedEvent, StoredEvent, redactable, redacted_row
from actors.privacy.redact import RedactionReport, Redactor, RedactionSettings

__all__ = ["RedactedBatch", "RedactedSession", "redact_batch", "redact_session", "redactor_for"]

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


def redact_batch(redactor: Redactor, rows: Sequence[StoredEvent] | Sequence[EncodedEvent]) -> RedactedBatch:
    """The rows redacted and encoded, or InvalidInput for the whole batch when one cannot be:
    nothing of a batch is stored unless all of it was redacted. Validated StoredEvents are
    redacted as they are; EncodedEvents are decoded first. Pure CPU work, so callers run it in
    a worker thread, off their event loop (every pattern is linear: cluster/bench/redaction.py)."""
    out: list[EncodedEvent] = []
    counts: RedactionCounts = {}
    for row in rows:
        try:
            encoded, report = _redacted(redactor, row)
        except (RecursionError, ValueError, TypeError) as exc:
            raise InvalidInput(
                f"event seq {row.seq} could not be redacted ({type(exc).__name__}); the batch was not stored",
                [{"field": f"seq {row.seq}", "error": "could not be redacted"}],
            ) from None
        if report.counts:
            counts[row.seq] = dict(report.counts)
        out.append(encoded)
    return RedactedBatch((out, counts))


def _redacted(redactor: Redactor, row: StoredEvent | EncodedEvent) -> tuple[EncodedEvent, RedactionReport]:
    if isinstance(row.payload, str):  # encoded already: decode, redact, encode again
        redacted, report = redactor.event(redactable(row))  # type: ignore[arg-type]
        return redacted_row(row, redacted), report  # type: ignore[arg-type]
    if row.target is None:
        redacted, report = redactor.event(_judged(row))
        return redacted_row(row, redacted), report
    # A validated row's dicts, redacted as one event (so `redacted_row` and `redactable` agree
    # with the encoded path above), but with the target apart: its JSON comes from the memo.
    event: dict[str, Any] = {"type": row.type}
    if row.url is not None:
        event["url"] = row.url
    event.update(row.payload)
    redacted, report = redactor.event_without_target(event, row.target)
    target, target_report = redactor.element_json(row.target)
    url = redacted.pop("url", None)
    redacted.pop("type", None)
    encoded = EncodedEvent(row.seq, row.type, row.ts, url, target, to_json(redacted).decode())
    return encoded, report.merge(target_report)


def _judged(row: StoredEvent) -> dict[str, Any]:
    """A validated row's dicts, as `redactable` would decode them from its text (the redactor
    copies what it keeps, so the row is not changed)."""
    event: dict[str, Any] = {"type": row.type}
    if row.url is not None:
        event["url"] = row.url
    if row.target is not None:
        event["target"] = row.target
    event.update(row.payload)
    return event


_REDACTORS: dict[int, tuple[RedactionSettings, Redactor]] = {}


def redactor_for(settings: RedactionSettings) -> Redactor:
    """One Redactor per settings object in this process (its compiled patterns and memo are
    worth keeping across batches); settings are frozen, so the object names its redactor."""
    found = _REDACTORS.get(id(settings))
    if found is None or found[0] is not settings:
        found = _REDACTORS[id(settings)] = (settings, Redactor(settings))
    return found[1]


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
