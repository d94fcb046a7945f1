"""OpenAPI documentation for routes that read their bodies themselves.

The handlers parse raw bodies (to answer 400/413/415/422 in our own error shape, with one
detail per bad event), so FastAPI cannot infer request schemas; these helpers put them back.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

__all__ = ["body_of", "errors_of", "install_openapi"]

_REF = "#/components/schemas/{model}"

_ERROR_TEXT = {
    400: "Malformed JSON",
    401: "Missing or unknown API key",
    403: "The key lacks the scope this route needs",
    404: "No such session or screenshot",
    408: "The body stopped arriving before its end",
    409: "Conflict, the session is closed, or not ready yet (see Retry-After)",
    413: "Body, batch or image over the configured limits",
    415: "Unsupported media type, or an image that does not decode",
    422: "Valid JSON, invalid content: one `details` entry per problem",
    429: "Rate limited; see Retry-After",
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
