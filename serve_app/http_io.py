"""Reading requests safely: bounded bodies, strict JSON, bearer keys, path ids."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from fastapi import Request

from actors.errors import MalformedInput, NotFound, PayloadTooLarge, RequestTimeout, UnsupportedMedia

__all__ = ["BODY_IDLE_TIMEOUT_S", "read_body", "read_json", "decode_json", "bearer_key", "session_uuid"]

# A client that declares a body and then stops sending it would otherwise hold a request slot
# (and its buffered chunks) for as long as it keeps the socket open: a slow-upload attack. Any
# gap this long between two chunks ends the request with 408. It bounds the silence, not the
# upload, so a slow but steady client still gets its 10 MB screenshot through.
BODY_IDLE_TIMEOUT_S = 4.0


async def read_body(request: Request, limit: int, *, idle_timeout_s: float = BODY_IDLE_TIMEOUT_S) -> bytes:
    """The body, refusing early (by Content-Length) or while streaming once it passes `limit`,
    and refusing a body that stalls for `idle_timeout_s` (408)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    stream = request.stream().__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), idle_timeout_s)
        except StopAsyncIteration:
            break
        except asyncio.TimeoutError:
            raise RequestTimeout(f"the body stopped arriving for {idle_timeout_s:g} s before its end") from None
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def decode_json(data: bytes | str) -> Any:
    """Strict JSON: no NaN/Infinity, UTF-8 only; any failure is a 400 naming where it broke."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(text, parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise MalformedInput("the body is not UTF-8") from None
    except RecursionError:
        raise MalformedInput("the JSON is nested too deeply") from None
    except (json.JSONDecodeError, ValueError) as exc:
        raise MalformedInput(f"malformed JSON: {exc}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def read_json(request: Request, limit: int, *, required: bool = True) -> Any:
    content_type = request.headers.get("content-type", "application/json")
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMedia(f"expected application/json, got {media!r}")
    body = await read_body(request, limit)
    if not body.strip():
        if required:
            raise MalformedInput("the body is empty; a JSON object was expected")
        return {}
    return decode_json(body)


def bearer_key(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def session_uuid(raw: str) -> uuid.UUID:
    """A path segment that is not a UUID names no session."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound(f"no session {raw[:64]!r}") from None
