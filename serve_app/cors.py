"""CORS: an explicit allowlist of browser origins, everything else denied.

Same-origin pages (the dashboard at /dashboard) need no entry: browsers apply CORS only across
origins. Listed origins (`security.cors_origins`: another host of the dashboard, the
extension's `chrome-extension://<id>`) get `Access-Control-Allow-Origin` for themselves, never
`*`, and never credentials (keys travel as bearer tokens, not cookies).

- A preflight (OPTIONS with Access-Control-Request-Method) from a listed origin asking for
  allowed methods and headers is `204` with the grants; any other is `403 cors_denied` in the
  one error shape, granting nothing.
- Other requests pass through: a listed origin gets the grant headers, an unlisted one none,
  so its page cannot read the answer (a request without a key changes nothing anyway).
- `Vary: Origin` on every answer, so a cache never hands one origin's grant to another.

The extension's service worker holds host permissions, which exempt it from CORS; the entry
is for its pages (popup, options) and for builds that drop those permissions.
"""

from __future__ import annotations

import json

from actors.errors import Forbidden
from actors.logs import current_request_id
from serve_app.error_responses import error_body
from serve_app.http_security import ASGIApp, Message, Receive, Scope, Send, settings_of

__all__ = ["ALLOWED_HEADERS", "ALLOWED_METHODS", "EXPOSED_HEADERS", "Cors"]

ALLOWED_METHODS = ("GET", "POST", "PUT", "OPTIONS")
ALLOWED_HEADERS = ("authorization", "content-type", "x-request-id", "x-painted-boxes")
# What a page may read besides the CORS-safelisted response headers.
EXPOSED_HEADERS = ("X-Request-ID", "Retry-After", "RateLimit", "RateLimit-Policy", "Content-Disposition")
_VARY = b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return bytes(value)
    return None


def _with_vary(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    vary = [v for k, v in headers if k.lower() == b"vary"]
    rest = [(k, v) for k, v in headers if k.lower() != b"vary"]
    merged = b", ".join([*vary, _VARY]) if vary else _VARY
    return [*rest, (b"vary", merged)]


class Cors:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin_raw = _header(scope, b"origin")
        if origin_raw is None:
            await self.app(scope, receive, send)
            return
        origin = origin_raw.decode("latin-1").lower()
        allowed = origin in settings_of(scope.get("app")).cors_origins
        if scope["method"] == "OPTIONS" and _header(scope, b"access-control-request-method") is not None:
            await self._preflight(scope, send, origin_raw, allowed)
            return

        async def send_with_grant(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = _with_vary(list(message.get("headers", [])))
                if allowed:
                    headers += [(b"access-control-allow-origin", origin_raw),
                                (b"access-control-expose-headers", ", ".join(EXPOSED_HEADERS).encode())]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_grant)

    async def _preflight(self, scope: Scope, send: Send, origin_raw: bytes, allowed: bool) -> None:
        origin = origin_raw.decode("latin-1")
        method = (_header(scope, b"access-control-request-method") or b"").decode("latin-1").strip().upper()
        asked = (_header(scope, b"access-control-request-headers") or b"").decode("latin-1")
        headers = [h.strip().lower() for h in asked.split(",") if h.strip()]
        refused = [h for h in headers if h not in ALLOWED_HEADERS]
        problem = None
        if not allowed:
            problem = f"origin {origin[:200]!r} is not allowed to call this API from a browser"
        elif method not in ALLOWED_METHODS:
            problem = f"method {method[:20]!r} is not allowed; allowed: {', '.join(ALLOWED_METHODS)}"
        elif refused:
            problem = f"request headers not allowed: {', '.join(h[:64] for h in refused[:10])}"
        if problem is not None:
            err = Forbidden(problem, code="cors_denied")
            await _answer(send, 403, _with_vary([(b"content-type", b"application/json")]),
                          json.dumps(error_body(err, _request_id(scope))).encode())
            return
        max_age = settings_of(scope.get("app")).cors_max_age_s
        grant = [
            (b"access-control-allow-origin", origin_raw),
            (b"access-control-allow-methods", ", ".join(ALLOWED_METHODS).encode()),
            (b"access-control-allow-headers", ", ".join(ALLOWED_HEADERS).encode()),
            (b"access-control-max-age", str(max_age).encode()),
        ]
        await _answer(send, 204, _with_vary(grant), b"")


def _request_id(scope: Scope) -> str:
    given = _header(scope, b"x-request-id")
    return given.decode("latin-1") if given else current_request_id() or ""


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
