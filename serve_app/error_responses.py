"""The only place where tracemill errors become HTTP status codes and the one error shape.

    {"error": {"code": "...", "message": "...", "details": [...], "request_id": "..."}}
"""

from __future__ import annotations

import logging
import math
import uuid
from typing import Any, Awaitable, TypeVar

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray.exceptions import RayActorError, RayTaskError
from starlette.exceptions import HTTPException as StarletteHTTPException

from actors import errors as E

__all__ = ["status_for", "error_body", "error_response", "rate_limit_headers", "install_error_handlers", "unwrap", "call_actor"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_STATUS: list[tuple[type[E.TracemillError], int]] = [
    (E.MalformedInput, 400),
    (E.Unauthenticated, 401),
    (E.Forbidden, 403),
    (E.NotFound, 404),
    (E.RequestTimeout, 408),
    (E.Conflict, 409),
    (E.PayloadTooLarge, 413),
    (E.UnsupportedMedia, 415),
    (E.InvalidInput, 422),
    (E.Overloaded, 429),
    (E.QuotaExceeded, 429),
    (E.DependencyUnavailable, 503),
]

_UNSTORABLE_TEXT = (
    asyncpg.exceptions.UntranslatableCharacterError,  # "\u0000" in JSON text bound for jsonb
    asyncpg.exceptions.CharacterNotInRepertoireError,  # a NUL byte bound for a text column
    UnicodeEncodeError,  # a lone surrogate on its way to UTF-8
)
_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def status_for(exc: E.TracemillError) -> int:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def request_id_of(request: Request) -> str:
    # Serve's proxy sets x-request-id on every request (echoing the client's) and on the response.
    return request.headers.get("x-request-id") or str(uuid.uuid4())


def error_body(exc: E.TracemillError, request_id: str) -> dict[str, Any]:
    return {
        "error": {
            "code": exc.code,
            "message": exc.message,
            "details": exc.details,
            "request_id": request_id,
        }
    }


def error_response(exc: E.TracemillError, request_id: str) -> JSONResponse:
    status = status_for(exc)
    headers = {}
    retry_after = getattr(exc, "retry_after_s", None)
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, E.RateLimited):
        headers.update(rate_limit_headers(exc))
    return JSONResponse(error_body(exc, request_id), status_code=status, headers=headers)


def rate_limit_headers(exc: E.RateLimited) -> dict[str, str]:
    """RateLimit-Policy and RateLimit (draft-ietf-httpapi-ratelimit-headers) for the policy
    that tripped; `t` is the Retry-After value, as the draft asks."""
    if not exc.details:
        return {}
    policy = exc.details[0]
    unit = f';qu="{policy["unit"]}"' if policy.get("unit") else ""
    reset = max(1, math.ceil(exc.retry_after_s))
    return {
        "RateLimit-Policy": f'{policy["policy"]};q={policy["quota"]};w={policy["window_s"]}{unit}',
        "RateLimit": f'{policy["policy"]};r={policy["remaining"]};t={reset}',
    }


def unwrap(exc: BaseException) -> BaseException:
    """Our error behind a Ray wrapper; a dead or restarting actor becomes 'try again soon'."""
    if isinstance(exc, RayTaskError):
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException):
            return unwrap(cause)
    if isinstance(exc, RayActorError):
        return E.DependencyUnavailable("a session shard is restarting; retry", retry_after_s=1.0)
    return exc


async def call_actor(ref: Awaitable[T]) -> T:
    """Await an actor call, re-raising what the actor raised as our own error type."""
    try:
        return await ref
    except Exception as exc:  # noqa: BLE001 - unwrap decides
        cause = unwrap(exc)
        if cause is exc:
            raise
        raise cause from None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(E.TracemillError)
    async def _ours(request: Request, exc: E.TracemillError) -> JSONResponse:
        return error_response(exc, request_id_of(request))

    @app.exception_handler(RequestValidationError)
    async def _fastapi_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"field": ".".join(str(p) for p in err.get("loc", ())), "error": err.get("msg", "invalid")}
            for err in exc.errors()
        ]
        return error_response(E.InvalidInput("the request is invalid", details), request_id_of(request))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        err = E.TracemillError(str(exc.detail), code=code)
        body = error_body(err, request_id_of(request))
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        cause = unwrap(exc)
        if isinstance(cause, _UNSTORABLE_TEXT):
            # Text the database cannot hold (NUL, a lone surrogate) that a route's validation
            # let through: the caller's input, so 422, and the failed statement wrote nothing.
            cause = E.InvalidInput("the request holds text the database cannot store (NUL or invalid Unicode)")
        if isinstance(cause, E.TracemillError):
            return error_response(cause, request_id_of(request))
        request_id = request_id_of(request)
        log.exception("unhandled error in request %s", request_id)
        err = E.TracemillError("internal error; the request id identifies it in the logs")
        return JSONResponse(error_body(err, request_id), status_code=500)
