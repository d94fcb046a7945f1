"""Middleware for Serve's own HTTP servers (its proxy, or each ingress replica's server in
throughput mode), named by RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH in the raylet's
environment (cluster/local.py sets it).

Serve wraps every app in its RequestIdMiddleware, which copies the client's `X-Request-ID`,
whatever it holds, onto the response before our app runs. Serve places callback middleware
outside its own, so this one replaces an id that is not short and plain first, and Serve then
echoes the clean one (PROTOCOL.md: at most 128 of `A-Za-z0-9._:-`, otherwise a new id).

Imported inside Serve's processes before anything of ours: it must import nothing heavy, and
an import error here would stop Serve's HTTP server from starting.
"""

from __future__ import annotations

import re
import uuid
from typing import Any, Awaitable, Callable, MutableMapping

from starlette.middleware import Middleware

__all__ = ["CALLBACK_ENV", "PlainRequestId", "fix_request_id", "http_middlewares"]

CALLBACK_ENV = {"RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": "serve_app.serve_hooks:http_middlewares"}

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]

_PLAIN_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


def fix_request_id(scope: Scope) -> None:
    """Keep one plain `x-request-id` request header; anything else becomes a fresh id."""
    headers: list[tuple[bytes, bytes]] = list(scope.get("headers") or [])
    given = [v for k, v in headers if k.lower() == b"x-request-id"]
    if len(given) == 1 and _PLAIN_ID.match(given[0]):
        return
    fresh = uuid.uuid4().hex.encode()
    scope["headers"] = [(k, v) for k, v in headers if k.lower() != b"x-request-id"] + [(b"x-request-id", fresh)]


class PlainRequestId:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            fix_request_id(scope)
        await self.app(scope, receive, send)


def http_middlewares() -> list[Middleware]:
    return [Middleware(PlainRequestId)]
