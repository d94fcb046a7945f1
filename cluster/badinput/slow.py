"""Slow partial uploads over a raw socket: declare a body, send a part of it slowly, stall.

An HTTP client library would refuse to send a body shorter than its Content-Length, so the
request is written by hand; the answer is read with a deadline (the case's bound), and the
socket is closed whatever happens, so a server that never answers costs one bounded wait.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

from cluster.badinput.case import BadCase

__all__ = ["send_slow", "parse_response"]


async def send_slow(endpoint: str, case: BadCase, path: str,
                    headers: dict[str, str]) -> tuple[int, dict[str, str], bytes] | None:
    """(status, headers, body) of the answer, or None when the server closed without one.
    Raises TimeoutError when neither came within `case.slow.bound_s`."""
    assert case.slow is not None
    slow = case.slow
    url = urlsplit(endpoint)
    started = time.monotonic()
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        head = [f"{case.method} {path} HTTP/1.1", f"Host: {url.netloc}", f"Content-Length: {slow.declared}",
                "Connection: close", *(f"{k}: {v}" for k, v in headers.items())]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        for part in slow.parts:
            await asyncio.sleep(slow.interval_s)
            writer.write(part)
            await writer.drain()
        remaining = slow.bound_s - (time.monotonic() - started)
        raw = await asyncio.wait_for(_read_answer(reader), timeout=max(0.1, remaining))
    finally:
        writer.close()
    return parse_response(raw) if raw else None


async def _read_answer(reader: asyncio.StreamReader) -> bytes:
    """Until the head and as much body as it declares, or until the server closes."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await reader.read(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:]
                   if line.lower().startswith(b"content-length:")), None)
    while length is not None and len(body) < length:
        chunk = await reader.read(65536)
        if not chunk:
            break
        body += chunk
    return data if length is None else head + b"\r\n\r\n" + body


def parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body
