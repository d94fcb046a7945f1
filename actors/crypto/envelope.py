"""The envelope of one encrypted value: AES-256-GCM under a workspace's data key, as text.

    tm1:<base64 of: key_id (4 bytes, big-endian) | nonce (12) | ciphertext+tag>

Text, so it fits the columns that held the plain value (a `text` column, or a JSON string in a
`jsonb` one) without a schema change; "tm1" is the format's version. Standard base64 (binascii):
half the cost of the URL-safe alphabet, whose translation was most of a seal's time. The key id travels with the
value, so a reader finds the key that encrypted it whichever key is current. The associated
data binds the value to its version, key id and place (`context`: session, seq and column), so
a ciphertext copied onto another row or column fails to decrypt instead of being read there.
"""

from __future__ import annotations

import binascii
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from actors.errors import DecryptionFailed

__all__ = ["PREFIX", "DATA_KEY_BYTES", "is_envelope", "key_id_of", "seal", "open_envelope"]

PREFIX = "tm1:"
DATA_KEY_BYTES = 32
_NONCE = 12
_HEAD = struct.Struct(">I")
_MIN_BODY = _HEAD.size + _NONCE + 16  # an empty plaintext still has its tag


def is_envelope(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def seal(aead: AESGCM, key_id: int, plaintext: bytes, context: bytes) -> str:
    """`plaintext` encrypted under the data key `aead` (whose id is `key_id`) for `context`."""
    head = _HEAD.pack(key_id)
    nonce = os.urandom(_NONCE)
    body = head + nonce + aead.encrypt(nonce, plaintext, _aad(head, context))
    return PREFIX + binascii.b2a_base64(body, newline=False).decode("ascii")


def _body(envelope: str) -> bytes:
    if not envelope.startswith(PREFIX):
        raise DecryptionFailed("not an encrypted value (no tm1: prefix)")
    try:
        body = binascii.a2b_base64(envelope[len(PREFIX):], strict_mode=True)
    except (binascii.Error, ValueError):
        raise DecryptionFailed("an encrypted value is not valid base64") from None
    if len(body) < _MIN_BODY:
        raise DecryptionFailed("an encrypted value is too short to hold its key id, nonce and tag")
    return body


def key_id_of(envelope: str) -> int:
    """The id of the data key that encrypted `envelope`."""
    return int(_HEAD.unpack_from(_body(envelope))[0])


def open_envelope(aead: AESGCM, key_id: int, envelope: str, context: bytes) -> bytes:
    """The plaintext of `envelope`, which must be sealed under data key `key_id` for `context`;
    any change to the value, its key id or its place raises DecryptionFailed."""
    body = _body(envelope)
    head, nonce = body[: _HEAD.size], body[_HEAD.size: _HEAD.size + _NONCE]
    if _HEAD.unpack(head)[0] != key_id:
        raise DecryptionFailed(f"an encrypted value names data key {_HEAD.unpack(head)[0]}, not {key_id}")
    try:
        return aead.decrypt(nonce, body[_HEAD.size + _NONCE:], _aad(head, context))
    except InvalidTag:
        raise DecryptionFailed(
            f"an encrypted value failed authentication under data key {key_id} "
            "(altered, moved from another row, or another key)"
        ) from None


def _aad(head: bytes, context: bytes) -> bytes:
    return PREFIX.encode() + head + context
