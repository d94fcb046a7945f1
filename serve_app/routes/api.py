"""The one FastAPI application every route family registers on, with the middleware and error
handlers around all of them. OpenAPI bodies are installed by serve_app/ingress.py once every
family is imported."""

# No `from __future__ import annotations`: FastAPI must see real types on the route methods
# that Serve rewrites into class-based views.
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from actors.logs import bound_request
from serve_app import cors, http_security
from serve_app.error_responses import install_error_handlers, request_id_of
from serve_app.live_api import LiveHub
from serve_app.openapi import install_docs
from serve_app.rate_limits import bound_peer
from serve_app.services import Services

__all__ = ["RouteBase", "SESSION_PATH", "api"]

SESSION_PATH = "/v1/sessions/{session_id}"

api = FastAPI(
    title="tracemill ingest API",
    version="1",
    docs_url=None,  # FastAPI's pages load from a CDN: serve_app.openapi.install_docs serves /docs
    redoc_url=None,
    description=(
        "Stream recorded browser sessions into tracemill. Authenticate with "
        "`Authorization: Bearer <credential>`: an API key (`tm_…`) or a signed-in person's access token "
        '(WebSocket clients that cannot set headers send `{"type": "auth", "api_key": "..."}` as their '
        'first frame). Every error has the shape `{"error": {"code", "message", "details", "request_id"}}`; '
        "every response carries `X-Request-ID`. Events are acked only after they are committed to the "
        "database. Rate limits (per API key and per client address: requests, stream frames and events, new "
        "sessions, screenshot bytes) answer `429 rate_limited` with `Retry-After`, `RateLimit-Policy` "
        "and `RateLimit`, or a `slow_down` frame on a stream; each ingress replica counts them on its "
        "own, so a deployment of R replicas admits up to R times each configured figure. Quotas per "
        "organisation answer `429 quota_exceeded` naming the quota; nothing is started."
    ),
)
install_error_handlers(api)


@api.middleware("http")
async def bind_request_id(request: Request, call_next: Any) -> Response:
    # Every log line this request causes, here and in the shards and tasks, carries its id;
    # the rate limits under it know its client address.
    with bound_request(request_id_of(request)), bound_peer(request.client, request.headers.get("x-forwarded-for")):
        return await call_next(request)


install_docs(api)
api.add_middleware(cors.Cors)
api.add_middleware(http_security.SecurityHeaders)  # added last, so outermost: plain request ids first


class RouteBase:
    """What every route family reads from the replica: its Services, the live hub, and the
    handle of the ModelServer deployment (set by `Ingress.__init__`)."""

    services: Services
    live: LiveHub
    model_server: Any
