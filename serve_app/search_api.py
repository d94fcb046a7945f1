"""`GET /v1/sessions`: the organisation's sessions, filtered, sorted, keyset-paged and searched
(actors/storage/search_repo.py holds the SQL). Scope `read`."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, Field, ValidationError

from actors.errors import InvalidInput, details_from_validation_error
from actors.storage import search_repo
from actors.storage.postgres import with_retries
from serve_app.services import Services

__all__ = ["SESSION_LIST_PARAMETERS", "SessionItem", "SessionList", "list_sessions", "parameters_of", "query_of"]

M = TypeVar("M", bound=BaseModel)


class SessionItem(BaseModel):
    session_id: str
    status: str
    session_type: str
    task: str | None
    site: str | None = Field(description="host of the session's first URL")
    started_at: str | None
    finished_at: str | None
    event_count: int
    screenshot_count: int
    quality: float | None = Field(description="overall quality, null until scored")
    intent: str | None = Field(description="the most frequent step intent (navigation aside)")
    frustration: int = Field(description="frustration signals found (rage/dead clicks, repeated back)")
    review_state: str = Field(description="none, or the most open state of its flags")
    title: str | None = Field(description="the first page title")
    card_title: str | None = Field(None, description="the session card's title, null until carded")
    caption: str | None = Field(None, description="the card's two sentences, null until carded")
    sentiment: str | None = Field(None, description="negative, neutral or positive: the typed "
                                  "text's sentiment; null when nothing typed was scored")
    sentiment_polarity: float | None = Field(None, description="-1..1, confidence-weighted mean")


class SessionList(BaseModel):
    items: list[SessionItem]
    next_cursor: str | None = Field(description="pass as cursor= for the next page; null at the end")
    total: int = Field(description="sessions matching the filters, over all pages")


def query_of(request: Request, model: type[M]) -> M:
    """A route's query parameters validated by `model` (extra="forbid": an unknown name is
    refused), each name at most once: every problem is one 422 detail."""
    seen: set[str] = set()
    repeated = sorted({k for k, _ in request.query_params.multi_items() if k in seen or seen.add(k)})
    if repeated:
        raise InvalidInput("invalid query parameters",
                           [{"field": f"query.{k[:40]}", "error": "given more than once"} for k in repeated[:10]])
    try:
        return model.model_validate(dict(request.query_params))
    except ValidationError as exc:
        raise InvalidInput("invalid query parameters", details_from_validation_error(exc, "query")) from None


async def list_sessions(services: Services, request: Request) -> dict[str, Any]:
    principal = await services.authorize(request)
    query = query_of(request, search_repo.SessionQuery)
    pool = await services.db()
    return await with_retries(lambda: search_repo.list_sessions(pool, query, principal.org_id, principal.workspace_id),
                              attempts=2, what="session list")


def parameters_of(model: type[BaseModel]) -> list[dict[str, Any]]:
    """The OpenAPI query parameters of a route, from the model that validates them."""
    params = []
    for name, field in model.model_json_schema()["properties"].items():
        schema = {k: v for k, v in field.items() if k not in ("title", "description")}
        params.append({"name": name, "in": "query", "required": False, "schema": schema,
                       "description": field.get("description", "")})
    return params


SESSION_LIST_PARAMETERS = parameters_of(search_repo.SessionQuery)
