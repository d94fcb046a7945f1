"""Export of everything kept about a recorded person (issue 18.2), permission `data.export`
(admins and owners):

- `POST /v1/recorders/{recorder_id}/export` queues the export job (jobs/export.py) → 202;
- `GET /v1/exports/{export_id}` its state and, while it runs, its counts so far;
- `GET /v1/exports/{export_id}/download` the ZIP once ready (409 `export_not_ready` before).

Another workspace's ids, unknown ones and a deleted recorder's (its exports too) are 404; a
malformed id is 422. Starting and downloading are audited (export.start, export.download)."""

# No `from __future__ import annotations`: FastAPI must see real types on the route methods
# that Serve rewrites into class-based views.
import json
import uuid
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from actors.accounts.audit import actor_of, audit
from actors.errors import Conflict, InvalidInput, NotFound
from actors.storage import export_repo
from serve_app import ray_jobs
from serve_app.openapi import errors_of
from serve_app.routes.api import RouteBase, api
from serve_app.services import Services

__all__ = ["ExportQueued", "ExportRoutes", "ExportView", "download_export", "get_export", "start_export"]

Status = Literal["queued", "running", "ready", "failed"]


class ExportQueued(BaseModel):
    export_id: str
    status: Status


class ExportView(BaseModel):
    export_id: str
    recorder_id: str
    status: Status
    requested_by: str = Field(description='who asked: "key:<id>", "account:<id>" or "cli:<user>"')
    progress: dict[str, Any] | None = Field(None, description="counts so far (sessions of sessions_total, events, images)")
    counts: dict[str, Any] | None = Field(None, description="the manifest's counts, once ready")
    bytes: int | None = None
    sha256: str | None = Field(None, description="of the ZIP")
    error: str | None = None
    download: str | None = Field(None, description="the download route, once ready")
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None


def _id(raw: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise InvalidInput(f"not a {what} id: {raw[:64]!r}", [{"field": f"path.{what}_id", "error": "not a UUID"}]) \
            from None


def _view(row: Any) -> dict[str, Any]:
    def js(value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    ready = row["status"] == "ready"
    return {"export_id": str(row["export_id"]), "recorder_id": str(row["recorder_id"]), "status": row["status"],
            "requested_by": row["requested_by"], "progress": js(row["progress"]), "counts": js(row["counts"]),
            "bytes": row["bytes"], "sha256": row["sha256"], "error": row["error"],
            "download": f"/v1/exports/{row['export_id']}/download" if ready else None,
            **{k: row[k].isoformat() if row[k] else None for k in ("created_at", "started_at", "finished_at")}}


async def start_export(services: Services, request: Request, raw_id: str) -> JSONResponse:
    principal = await services.authorize(request)
    recorder_id = _id(raw_id, "recorder")
    actor = actor_of(principal)
    export_id = uuid.uuid4()
    pool = await services.db()
    async with pool.acquire() as conn, conn.transaction():
        if await export_repo.live_recorder(conn, principal.org_id, principal.workspace_id, recorder_id) is None:
            raise NotFound(f"no recorder {recorder_id}")
        await export_repo.insert(conn, export_id, principal.org_id, principal.workspace_id, recorder_id,
                                 f"{actor.kind}:{actor.actor_id}")
        await audit(conn, "export.start", actor, target=str(recorder_id), address=services.guard.address(),
                    details={"export_id": str(export_id)})
    try:
        job = await ray_jobs.submit(f"tracemill-export-{export_id}", "jobs.export", ["--export-id", str(export_id)])
    except Exception as exc:
        await export_repo.fail(pool, export_id, str(exc))
        raise
    await export_repo.set_job(pool, export_id, job)
    return JSONResponse({"export_id": str(export_id), "status": "queued"}, status_code=202)


async def _export(services: Services, request: Request, raw_id: str) -> tuple[Any, Any]:
    """(principal, row) of an export of the caller's workspace whose recorder is not deleted;
    an export whose job ended without recording an outcome is failed with Ray's reason."""
    principal = await services.authorize(request)
    export_id = _id(raw_id, "export")
    pool = await services.db()
    row = await export_repo.visible_export(pool, export_id)
    if not principal.in_workspace(row):
        raise NotFound(f"no export {export_id}")
    if row["status"] in ("queued", "running") and row["ray_job_id"]:
        if (why := await ray_jobs.job_ended(row["ray_job_id"])) is not None:
            await export_repo.fail(pool, export_id, f"{why} (the export recorded no outcome)")
            row = await export_repo.visible_export(pool, export_id)
    return principal, row


async def get_export(services: Services, request: Request, raw_id: str) -> dict[str, Any]:
    return _view((await _export(services, request, raw_id))[1])


async def download_export(services: Services, request: Request, raw_id: str) -> Response:
    principal, row = await _export(services, request, raw_id)
    if row["status"] != "ready":
        raise Conflict(f"export {row['export_id']} is {row['status']}; it downloads once ready",
                       code="export_not_ready")
    data = await services.store.get(row["object_key"])
    await audit(await services.db(), "export.download", actor_of(principal), target=str(row["export_id"]),
                address=services.guard.address(),
                details={"what": "recorder_export", "recorder_id": str(row["recorder_id"]), "bytes": len(data)})
    return Response(content=data, media_type="application/zip", headers={
        "Content-Disposition": f'attachment; filename="export-{row["recorder_id"]}.zip"',
        "X-Export-SHA256": row["sha256"]})


class ExportRoutes(RouteBase):
    @api.post(
        "/v1/recorders/{recorder_id}/export", status_code=202, response_model=ExportQueued, tags=["export"],
        responses=errors_of(401, 403, 404, 422, 503),
        summary="Export everything kept about a recorder as one ZIP, built by a Ray job (data.export)",
    )
    async def start_export(self, recorder_id: str, request: Request) -> JSONResponse:
        return await start_export(self.services, request, recorder_id)

    @api.get(
        "/v1/exports/{export_id}", response_model=ExportView, tags=["export"],
        responses=errors_of(401, 403, 404, 422, 503),
        summary="An export's state: queued, running (with counts so far), ready or failed (data.export)",
    )
    async def get_export(self, export_id: str, request: Request) -> dict[str, Any]:
        return await get_export(self.services, request, export_id)

    @api.get(
        "/v1/exports/{export_id}/download", tags=["export"], response_class=Response,
        responses={200: {"content": {"application/zip": {}}}, **errors_of(401, 403, 404, 409, 422, 503)},
        summary="Download a ready export's ZIP (its manifest.json lists every file with its sha256); 409 before (data.export)",
    )
    async def download_export(self, export_id: str, request: Request) -> Response:
        return await download_export(self.services, request, export_id)
