"""Strict JSON decoding at the edge."""

import pytest

from actors.errors import MalformedInput, NotFound
from serve_app.http_io import decode_json, session_uuid


def test_decode_json_accepts_json() -> None:
    assert decode_json(b'{"events": [1, "\\u00e9"]}') == {"events": [1, "é"]}


@pytest.mark.parametrize("raw", [b"{", b"\xff", b"NaN", b'{"a": Infinity}', b"[" * 100_000 + b"]" * 100_000])
def test_decode_json_refuses(raw: bytes) -> None:
    with pytest.raises(MalformedInput):
        decode_json(raw)


def test_session_uuid() -> None:
    assert str(session_uuid("6f1c2c4e-0b0e-4d35-9b55-6d0a1f0e9b11")) == "6f1c2c4e-0b0e-4d35-9b55-6d0a1f0e9b11"
    with pytest.raises(NotFound):
        session_uuid("../etc/passwd")
