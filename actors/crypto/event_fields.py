"""Which stored event fields are encrypted, and the two directions: the shard's staging rows on
the way in, the rows `processing_repo.event_rows` returns on the way out (the one read path of
every reader: events API, replay, analysis, cards, archive, dataset build, moderation, export).

An event row of an encrypted workspace (its values already redacted) is stored as
    url NULL, target NULL, payload {"$enc": <one envelope of url, target and payload>}
so typed and form values, page titles and text, DOM snapshots, the element acted on (text,
label, selectors, attributes) and the URL are all inside one AES-256-GCM ciphertext: one seal
per event (~4 µs) rather than one per column. A screenshot event keeps its `screenshot_id`
beside it in plain text, since the screenshot step finds the event by it in SQL (an opaque
id, no content). Plain: session id, seq, type, timestamps (what ordering, counting, retention
and the session's counters need). The associated data is "<session>/<seq>/<type>", so a
ciphertext copied onto another row fails to open.
"""

from __future__ import annotations

import asyncio
import struct
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic_core import from_json, to_json

from actors.crypto.envelope import key_id_of, open_envelope, seal
from actors.crypto.keyring import Conn, Keyring, current
from actors.errors import DataKeyUnavailable, DecryptionFailed

__all__ = ["ENC_FIELD", "encrypt_staging_rows", "decrypt_event_rows", "is_encrypted_row", "open_row",
           "row_key_ids", "seal_row"]

ENC_FIELD = "$enc"
_PLAIN_PAYLOAD = ("screenshot_id",)
_PAYLOAD_PREFIX = '{"' + ENC_FIELD + '"'
# The sealed body: flags (1: url present, 2: target present), the two lengths, then the bytes
# of url, target (JSON) and payload (JSON).
_FRAME = struct.Struct(">BII")
Row = tuple[Any, ...]  # (session_id, seq, type, ts, url, target, payload): the shard's staging row


def _context(session_id: uuid.UUID, seq: int, kind: str) -> bytes:
    return f"{session_id}/{seq}/{kind}".encode()


def seal_row(aead: AESGCM, key_id: int, row: Row) -> Row:
    """One staging row (target and payload as JSON text) with its values sealed into payload."""
    sid, seq, kind, ts, url, target, payload = row
    u, t = (url or "").encode(), (target or "").encode()
    body = _FRAME.pack((url is not None) | (target is not None) << 1, len(u), len(t)) + u + t + payload.encode()
    stored = _PAYLOAD_PREFIX + ':"' + seal(aead, key_id, body, _context(sid, seq, kind)) + '"'
    if kind == "screenshot":
        plain = from_json(payload)
        extra = {k: plain[k] for k in _PLAIN_PAYLOAD if k in plain}
        if extra:
            stored += "," + to_json(extra).decode()[1:-1]
    return (sid, seq, kind, ts, None, None, stored + "}")


def _open_body(body: bytes) -> tuple[str | None, str | None, str]:
    flags, url_len, target_len = _FRAME.unpack_from(body)
    at = _FRAME.size
    url = body[at:at + url_len].decode() if flags & 1 else None
    at += url_len
    target = body[at:at + target_len].decode() if flags & 2 else None
    return url, target, body[at + target_len:].decode()


async def encrypt_staging_rows(keyring: Keyring, conn: Conn, rows: Sequence[Row], offload_over: int = 200) -> list[Row]:
    """`rows` with each encrypted workspace's values encrypted under its current data key.
    Sealing costs ~14 µs an event (measured): a batch of more than `offload_over` rows is
    sealed in a worker thread, so a big commit does not stall the shard's event loop."""
    workspaces = await keyring.workspaces(conn, {row[0] for row in rows})
    by_workspace: dict[uuid.UUID, tuple[int, AESGCM] | None] = {}
    for workspace_id in set(workspaces.values()):
        key_id = await keyring.active_key(conn, workspace_id)
        by_workspace[workspace_id] = None if key_id is None else (key_id, await keyring.key(conn, key_id))
    # A session not found has no workspace and no key: the insert refuses its row anyway.
    keys = {sid: by_workspace[ws] for sid, ws in workspaces.items() if by_workspace[ws] is not None}
    if not keys:
        return list(rows)
    if len(rows) > offload_over:
        return await asyncio.to_thread(_seal_rows, rows, keys)
    return _seal_rows(rows, keys)


def _seal_rows(rows: Sequence[Row], keys: Mapping[uuid.UUID, tuple[int, AESGCM] | None]) -> list[Row]:
    out: list[Row] = []
    for row in rows:
        found = keys.get(row[0])
        out.append(row if found is None else seal_row(found[1], found[0], row))
    return out


def is_encrypted_row(row: Mapping[str, Any]) -> bool:
    payload = row["payload"]
    return isinstance(payload, str) and payload.startswith(_PAYLOAD_PREFIX)


def _envelope(row: Mapping[str, Any]) -> str:
    return str(from_json(row["payload"])[ENC_FIELD])


def row_key_ids(row: Mapping[str, Any]) -> set[int]:
    """The data keys a stored row's values name (none for a plain row)."""
    return {key_id_of(_envelope(row))} if is_encrypted_row(row) else set()


async def open_row(keyring: Keyring, conn: Conn, session_id: uuid.UUID, row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored row (target and payload as JSON text) with its values in plain text again."""
    plain = dict(row)
    if is_encrypted_row(row):
        envelope = _envelope(row)
        key_id = key_id_of(envelope)
        aead = await keyring.key(conn, key_id)
        body = open_envelope(aead, key_id, envelope, _context(session_id, row["seq"], row["type"]))
        plain["url"], plain["target"], plain["payload"] = _open_body(body)
    return plain


async def decrypt_event_rows(conn: Conn, session_id: uuid.UUID, rows: Sequence[Any],
                             keyring: Keyring | None = None) -> list[Any]:
    """`rows` as stored, with encrypted values opened; rows of a workspace that is not
    encrypted come back untouched (the same objects), so readers pay nothing then."""
    if not any(is_encrypted_row(r) for r in rows):
        return list(rows)
    keyring = keyring or current()
    if keyring is None:
        raise DataKeyUnavailable("events here are encrypted and this process has no key-encryption key "
                                 "(set TRACEMILL_ENCRYPTION_KEK or the KMS key as for the shards)")
    try:
        return [await open_row(keyring, conn, session_id, r) if is_encrypted_row(r) else r for r in rows]
    except (ValueError, KeyError, TypeError) as exc:  # a JSON string that is not one of ours
        raise DecryptionFailed(f"a stored encrypted event of session {session_id} is malformed") from exc
