"""What the OpenAI-compatible test server's routers share: OpenAI's error body, and a wait
that ends when the client hangs up."""

from __future__ import annotations

import asyncio
import threading
import time

from fastapi import Request
from fastapi.responses import JSONResponse

__all__ = ["RequestWindow", "error_response", "forced_reply", "limited", "stalled"]

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


class RequestWindow:
    """A provider's request limit as OpenAI reports it: `limit` requests per `window_s`, each
    answer carrying x-ratelimit-limit/remaining/reset-requests; a request past the limit is a
    429 with Retry-After (counted in `refused`)."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit, self.window_s = limit, window_s
        self.started = time.monotonic()
        self.used = self.refused = 0
        self._lock = threading.Lock()

    def take(self) -> tuple[bool, dict[str, str]]:
        """(allowed, headers) for one request now."""
        with self._lock:
            now = time.monotonic()
            if now - self.started >= self.window_s:
                self.started, self.used = now, 0
            reset = max(0.0, self.window_s - (now - self.started))
            allowed = self.used < self.limit
            self.used += allowed
            self.refused += not allowed
            headers = {"x-ratelimit-limit-requests": str(self.limit),
                       "x-ratelimit-remaining-requests": str(self.limit - self.used),
                       "x-ratelimit-reset-requests": f"{int(reset * 1000)}ms"}
            if not allowed:
                headers["retry-after-ms"] = str(int(reset * 1000) + 1)
            return allowed, headers


def limited(window: RequestWindow | None) -> tuple[JSONResponse | None, dict[str, str]]:
    """The 429 to answer instead (or None) and the rate-limit headers to send either way."""
    if window is None:
        return None, {}
    allowed, headers = window.take()
    if allowed:
        return None, headers
    reply = error_response(429, retry_after=None)
    reply.headers.update(headers)
    return reply, headers
