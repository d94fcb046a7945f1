"""Security headers on every response, plain request ids, and the optional /metrics key.

A pure ASGI middleware (no response buffering, WebSockets untouched but for the request id):

- `X-Content-Type-Options: nosniff` everywhere; `Cache-Control: no-store` on the data routes
  (/v1/…, /readyz, /metrics) and on any response that did not choose its own caching;
- `Strict-Transport-Security` on responses to requests that arrived over TLS, or behind a
  proxy that says so (`X-Forwarded-Proto: https`) when the settings trust it;
- `X-Request-ID` only when short and plain (PROTOCOL.md: at most 128 of `A-Za-z0-9._:-`),
  else replaced by a fresh id before anything (a log line, an error body) can echo it.

Settings come from `app.state.security` (set by `configure` in the replica), so the module-level
FastAPI app needs no settings at import time.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Awaitable, Callable, MutableMapping

from fastapi import FastAPI, Request

from actors.errors import Unauthenticated
from configs.security import SecuritySettings
from serve_app.http_io import bearer_key
from serve_app.serve_hooks import fix_request_id

__all__ = ["SecurityHeaders", "configure", "require_metrics_key", "settings_of"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_NO_STORE_PREFIXES = ("/v1/", "/readyz", "/metrics")
_DEFAULT = SecuritySettings()


# The replica's settings as well: Serve unpickles the app that serves requests, which need not be
# the object a replica's `configure` call names (the route families import `api` by module), so
# an app without its own settings reads the ones this process was configured with.
_configured: SecuritySettings | None = None


def configure(app: FastAPI, settings: SecuritySettings) -> None:
    global _configured
    app.state.security = settings
    _configured = settings


def settings_of(app: Any) -> SecuritySettings:
    state = getattr(app, "state", None)
    found = getattr(state, "security", None)
    if isinstance(found, SecuritySettings):
        return found
    return _configured if _configured is not None else _DEFAULT


def _over_tls(scope: Scope, settings: SecuritySettings) -> bool:
    if scope.get("scheme") in ("https", "wss"):
        return True
    if not settings.trust_forwarded_proto:
        return False
    for key, value in scope.get("headers") or ():
        if key.lower() == b"x-forwarded-proto":
            # A chain of proxies appends: the first value is what the client used.
            return value.split(b",", 1)[0].strip().lower() == b"https"
    return False


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        fix_request_id(scope)  # again: Serve may run without serve_hooks
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        settings = settings_of(scope.get("app"))
        path: str = scope.get("path", "")
        data_route = path.startswith(_NO_STORE_PREFIXES)
        hsts = _over_tls(scope, settings) and settings.hsts_max_age_s > 0

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if not (data_route and k.lower() == b"cache-control")]
                names = {k.lower() for k, _ in headers}
                if b"x-content-type-options" not in names:
                    headers.append((b"x-content-type-options", b"nosniff"))
                if b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                if hsts:
                    value = f"max-age={settings.hsts_max_age_s}; includeSubDomains".encode()
                    headers.append((b"strict-transport-security", value))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def require_metrics_key(request: Request) -> None:
    """GET /metrics needs the key when the settings name one (Prometheus: `authorization:
    credentials`); a wrong key is 401 like any other."""
    expected = settings_of(request.app).metrics_key_sha256
    if expected is None:
        return
    key = bearer_key(request)
    given = hashlib.sha256(key.encode()).hexdigest() if key else ""
    if not hmac.compare_digest(given, expected):
        raise Unauthenticated("GET /metrics needs the metrics key: Authorization: Bearer <key>")
