"""Retention periods of a workspace (issue 18.4), permission `workspaces.manage` (admins and
owners of the workspace):

- `GET /v1/workspaces/{workspace_id}/retention` the days each data type is kept (its own, else
  the deployment's default) and which it chose itself;
- `PUT /v1/workspaces/{workspace_id}/retention` sets some types' days (`null`: back to the
  default); the others keep theirs. Audited (`retention.update`, with the days set).

The retention job (jobs/retention.py, daily by the scheduler) applies them. Another workspace's
id or a malformed one is 404, before the body is read; a bad body is 422 and changes nothing."""

# No `from __future__ import annotations`: FastAPI must see real types on the route methods
# that Serve rewrites into class-based views.
import uuid
from typing import Any

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from actors.accounts.audit import actor_of, audit
from actors.errors import NotFound
from actors.storage import retention_repo
from configs.retention import DATA_TYPES, MAX_DAYS
from serve_app.http_io import read_json
from serve_app.openapi import errors_of
from serve_app.review_api import _body, body_inline
from serve_app.routes.api import RouteBase, api
from serve_app.services import Services

__all__ = ["RetentionBody", "RetentionRoutes", "RetentionView", "get_retention", "put_retention"]

MAX_BODY_BYTES = 4 * 1024
_PATH = "/v1/workspaces/{workspace_id}/retention"


def _days(description: str) -> Any:
    return Field(None, ge=1, le=MAX_DAYS, description=f"days {description} are kept; null: the deployment's default")


class RetentionBody(BaseModel):
    # strict: "30" or true is not a number of days
    model_config = ConfigDict(extra="forbid", strict=True)
    events: int | None = _days("raw events")
    screenshots: int | None = _days("screenshots (rows and images)")
    archives: int | None = _days("session archives")
    datasets: int | None = _days("built datasets (then withdrawn, their models flagged)")
    audit: int | None = _days("audit log entries")

    @model_validator(mode="after")
    def _some(self) -> "RetentionBody":
        if not self.model_fields_set:
            raise ValueError("name at least one of " + ", ".join(DATA_TYPES))
        return self


class RetentionView(BaseModel):
    workspace_id: str
    events: int = Field(description="days raw events are kept after their session was created")
    screenshots: int
    archives: int
    datasets: int = Field(description="days after a dataset was built")
    audit: int = Field(description="days after an audit entry was written")
    own: list[str] = Field(description="the types this workspace set; the others follow the defaults")
    defaults: dict[str, int] = Field(description="the deployment's defaults (configs/retention.py)")
    updated_at: str | None


def _workspace(principal: Any, raw_id: str) -> uuid.UUID:
    try:
        workspace_id = uuid.UUID(raw_id)
    except ValueError:
        raise NotFound(f"no workspace {raw_id[:64]!r}") from None
    if workspace_id != principal.workspace_id:  # another workspace is not the caller's to see
        raise NotFound(f"no workspace {workspace_id}")
    return workspace_id


async def _view(services: Services, pool: Any, workspace_id: uuid.UUID) -> dict[str, Any]:
    defaults = services.settings.retention.defaults
    row = await retention_repo.get_periods(pool, workspace_id)
    own = {t: row[f"{t}_days"] for t in DATA_TYPES if row is not None and row[f"{t}_days"] is not None}
    return {"workspace_id": str(workspace_id), **{t: own.get(t, defaults.days(t)) for t in DATA_TYPES},
            "own": sorted(own), "defaults": defaults.model_dump(),
            "updated_at": row["updated_at"].isoformat() if row is not None else None}


async def get_retention(services: Services, request: Request, raw_id: str) -> dict[str, Any]:
    principal = await services.authorize(request)
    workspace_id = _workspace(principal, raw_id)
    return await _view(services, await services.db(), workspace_id)


async def put_retention(services: Services, request: Request, raw_id: str) -> dict[str, Any]:
    principal = await services.authorize(request)
    workspace_id = _workspace(principal, raw_id)
    body: RetentionBody = _body(await read_json(request, MAX_BODY_BYTES), RetentionBody, "retention periods")
    changes = {t: getattr(body, t) for t in DATA_TYPES if t in body.model_fields_set}
    pool = await services.db()
    async with pool.acquire() as conn, conn.transaction():
        await retention_repo.set_periods(conn, principal.org_id, workspace_id, changes)
        await audit(conn, "retention.update", actor_of(principal), target=str(workspace_id),
                    address=services.guard.address(), details={f"{t}_days": d for t, d in changes.items()})
    return await _view(services, pool, workspace_id)


class RetentionRoutes(RouteBase):
    @api.get(_PATH, response_model=RetentionView, tags=["retention"], responses=errors_of(401, 403, 404, 503),
             summary="The workspace's retention periods in days, per data type (admins)")
    async def get_workspace_retention(self, workspace_id: str, request: Request) -> dict[str, Any]:
        return await get_retention(self.services, request, workspace_id)

    @api.put(_PATH, response_model=RetentionView, tags=["retention"], openapi_extra=body_inline(RetentionBody),
             responses=errors_of(400, 401, 403, 404, 413, 415, 422, 503),
             summary="Set some of the workspace's retention periods; null restores the default (admins; audited)")
    async def put_workspace_retention(self, workspace_id: str, request: Request) -> dict[str, Any]:
        return await put_retention(self.services, request, workspace_id)
