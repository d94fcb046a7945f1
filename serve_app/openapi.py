"""OpenAPI documentation for routes that read their bodies themselves, and the /docs page.

The handlers parse raw bodies (to answer 400/413/415/422 in our own error shape, with one
detail per bad event), so FastAPI cannot infer request schemas; these helpers put them back.

/docs is Swagger UI 5 (the first to read OpenAPI 3.1, which FastAPI writes) from the files the
`fastapi-offline` package ships, served by the API itself under a strict CSP. FastAPI's own page
loads its script from a CDN and runs inline script, /redoc likewise: both are off
(`docs_url=None, redoc_url=None`) and this page replaces them.
"""

from __future__ import annotations

from typing import Any

from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from pydantic import BaseModel

from actors.errors import NotFound

__all__ = ["DOCS_CSP", "body_of", "errors_of", "install_docs", "install_openapi"]

_STATIC = Path(__file__).parent / "static"
# name → (file, media type): the few Swagger UI files the page loads, and ours.
_DOCS_ASSETS = {
    "swagger-ui-bundle.js": ("swagger", "text/javascript"),
    "swagger-ui.css": ("swagger", "text/css"),
    "docs-init.js": ("ours", "text/javascript"),
}
# Swagger UI sets element styles and shows data: SVG icons; scripts come only from here.
DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

_REF = "#/components/schemas/{model}"

_ERROR_TEXT = {
    400: "Malformed JSON",
    401: "Missing, unknown or expired credential (an API key or a sign-in access token)",
    403: ("The caller's role lacks the permission this route needs (the README's permission table), or "
          "`consent_required`: a recorder key whose recorder has not agreed to the workspace's current notice "
          "(details name its version)"),
    404: "No such session or screenshot",
    408: "The body stopped arriving before its end",
    409: ("Conflict, the session is closed, or not ready yet (see Retry-After); `notice_changed`: consent "
          "to a notice version that is no longer the current one"),
    413: "Body, batch or image over the configured limits",
    415: "Unsupported media type, or an image that does not decode",
    422: "Valid JSON, invalid content: one `details` entry per problem",
    429: ("Rate limited (`rate_limited`, with Retry-After, RateLimit-Policy and RateLimit; the limits are "
          "counted per ingress replica) or over an organisation's quota (`quota_exceeded`, named in details)"),
    503: "A dependency is unavailable; see Retry-After",
}


def body_of(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": {"$ref": _REF.format(model=model.__name__)}}},
        }
    }


def errors_of(*codes: int) -> dict[int | str, dict[str, Any]]:
    if 401 in codes and 429 not in codes:  # every route with a key has rate limits
        codes = (*codes, 429)
    return {
        code: {
            "description": _ERROR_TEXT[code],
            "content": {"application/json": {"schema": {"$ref": _REF.format(model="ErrorResponse")}}},
        }
        for code in codes
    }


def install_openapi(app: FastAPI, models: list[type[BaseModel]]) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                model_schema = model.model_json_schema(ref_template=_REF, mode="validation")
                components.update(model_schema.pop("$defs", {}))
                components[model.__name__] = model_schema
            schema["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            schema["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _docs_file(name: str) -> tuple[bytes, str]:
    if name == "docs.html":
        return (_STATIC / "docs.html").read_bytes(), "text/html; charset=utf-8"
    where, media = _DOCS_ASSETS.get(name, (None, ""))
    if where == "ours":
        return (_STATIC / name).read_bytes(), media
    if where == "swagger":
        # Only its static files are used (importing it imports nothing but FastAPI).
        return (resources.files("fastapi_offline") / "static" / name).read_bytes(), media
    raise NotFound(f"no docs file {name[:64]!r}")


def _docs_response(name: str) -> Response:
    content, media = _docs_file(name)
    return Response(content, media_type=media, headers={
        "Content-Security-Policy": DOCS_CSP, "Cache-Control": "no-cache", "Referrer-Policy": "no-referrer",
    })


def install_docs(app: FastAPI) -> None:
    """GET /docs and its assets, without a key (they hold no data; the schema is public)."""

    @app.get("/docs", include_in_schema=False)
    async def docs_page() -> Response:
        return _docs_response("docs.html")

    @app.get("/docs/assets/{name}", include_in_schema=False)
    async def docs_asset(name: str) -> Response:
        return _docs_response(name)
