"""What the OpenAI-compatible test server's routers share: OpenAI's error body, and a wait
that ends when the client hangs up."""

from __future__ import annotations

import asyncio
import time

from fastapi import Request
from fastapi.responses import JSONResponse

__all__ = ["error_response", "forced_reply", "stalled"]

ERROR_CODES = {
    429: "rate_limit_exceeded",
    401: "invalid_api_key",
    404: "model_not_found",
}


def error_response(status: int, retry_after: str | None) -> JSONResponse:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    error = {
        "message": f"scripted HTTP {status} from the test server",
        "type": "requests" if status == 429 else kind,
        "param": None,
        "code": ERROR_CODES.get(status),
    }
    headers = {"retry-after": retry_after} if retry_after else None
    return JSONResponse({"error": error}, status_code=status, headers=headers)


async def stalled(request: Request, seconds: float) -> bool:
    """Wait `seconds` or until the client hangs up (True): no handler outlives it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await request.is_disconnected():
            return True
        await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
    return False


async def forced_reply(request: Request, behaviour: str) -> JSONResponse | None:
    """What a scripted behaviour makes the server answer instead of its normal reply: an HTTP
    error ("429", "429:<retry-after>", "500"), or 499 after a stall the client gave up on
    ("timeout:<seconds>"). None: answer normally (a stall the client sat out included)."""
    kind, _, arg = behaviour.partition(":")
    if kind.isdigit():
        return error_response(int(kind), retry_after=arg or None)
    if kind == "timeout" and await stalled(request, float(arg or 5)):
        return JSONResponse({}, status_code=499)  # the client has gone
    return None
