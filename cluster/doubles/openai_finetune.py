"""The fine-tuning side of the OpenAI-compatible test server: files, uploads (in parts) and
fine-tuning jobs with events and checkpoints, their state and the records of each call.
See cluster/doubles/openai_server.py for how behaviours are scripted."""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from cluster.doubles.openai_common import error_response, forced_reply

__all__ = ["FineTuneRequest", "FineTuneState", "finetune_router"]

_FAILURES = {
    "failed": {"code": "invalid_training_file", "param": "training_file",
               "message": "The job failed due to an invalid training file."},
    "server_error": {"code": "server_error", "param": None,
                     "message": "The job failed due to an internal error."},
}


def _public(job: dict[str, Any]) -> dict[str, Any]:
    """The job as the API shows it: without the server's own bookkeeping (keys with _)."""
    return {k: v for k, v in job.items() if not k.startswith("_")}


@dataclass(frozen=True)
class FineTuneRequest:
    method: str
    path: str
    # JSON bodies; for multipart, the form fields without their data
    body: dict[str, Any] | None
    authorization: str | None
    behaviour: str


@dataclass
class FineTuneState:
    """What the fine-tuning routes hold: files, uploads (with their parts) and jobs."""

    outcome: str = "succeeded"  # or "failed" / "server_error": where a job ends after running
    outcomes: list[str] = field(default_factory=list)  # per new job, first; then `outcome`
    running_polls: int = 1  # GETs a job answers "running" before it ends
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    file_data: dict[str, bytes] = field(default_factory=dict)
    uploads: dict[str, dict[str, Any]] = field(default_factory=dict)
    parts: dict[str, bytes] = field(default_factory=dict)  # part id -> bytes
    upload_parts: dict[str, list[str]] = field(default_factory=dict)  # in arrival order
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    checkpoints: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    counter: int = 0

    def new_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter:06d}"


def finetune_router(server: Any) -> APIRouter:
    """Files, uploads and fine-tuning jobs; `server` is the OpenAITestServer (its script,
    its records and its `finetune` state)."""
    router = APIRouter()

    async def scripted(
        request: Request, body: dict[str, Any] | None
    ) -> JSONResponse | None:
        """Record the call and play the next scripted behaviour; None means answer normally."""
        behaviour = server.next_behaviour()
        server.record_finetune(
            FineTuneRequest(
                method=request.method,
                path=request.url.path,
                body=body,
                authorization=request.headers.get("authorization"),
                behaviour=behaviour,
            )
        )
        return await forced_reply(request, behaviour)

    def lost(behaviour: str, reply: JSONResponse) -> JSONResponse:
        """ "lost:NNN": the request was carried out, but the client gets status NNN."""
        kind, _, arg = behaviour.partition(":")
        return error_response(int(arg or 500), retry_after=None) if kind == "lost" else reply

    def state() -> FineTuneState:
        return server.finetune

    def not_found(what: str) -> JSONResponse:
        error = {
            "message": f"no such {what}",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
        return JSONResponse({"error": error}, status_code=404)

    def file_object(
        file_id: str, filename: str, data: bytes, purpose: str
    ) -> dict[str, Any]:
        obj = {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
        }
        state().files[file_id] = obj
        state().file_data[file_id] = data
        return obj

    @router.post("/files")
    async def create_file(request: Request) -> JSONResponse:
        form = _multipart(request.headers.get("content-type", ""), await request.body())
        fields = {k: v[1].decode() for k, v in form.items() if v[0] is None}
        if (reply := await scripted(request, fields)) is not None:
            return reply
        filename, data = form.get("file", ("upload.jsonl", b""))
        obj = file_object(
            state().new_id("file"),
            filename or "upload.jsonl",
            data,
            fields.get("purpose", ""),
        )
        return JSONResponse(obj)

    @router.post("/uploads")
    async def create_upload(request: Request) -> JSONResponse:
        body = await request.json()
        if (reply := await scripted(request, body)) is not None:
            return reply
        now = int(time.time())
        upload = {
            "id": state().new_id("upload"),
            "object": "upload",
            "bytes": body["bytes"],
            "created_at": now,
            "expires_at": now + 3600,
            "filename": body["filename"],
            "purpose": body["purpose"],
            "status": "pending",
            "file": None,
        }
        state().uploads[upload["id"]] = upload
        state().upload_parts[upload["id"]] = []
        return JSONResponse(upload)

    @router.post("/uploads/{upload_id}/parts")
    async def add_part(upload_id: str, request: Request) -> JSONResponse:
        form = _multipart(request.headers.get("content-type", ""), await request.body())
        if (reply := await scripted(request, {"upload_id": upload_id})) is not None:
            return reply
        if upload_id not in state().uploads:
            return not_found("upload")
        part_id = state().new_id("part")
        state().parts[part_id] = form.get("data", (None, b""))[1]
        state().upload_parts[upload_id].append(part_id)
        return JSONResponse(
            {
                "id": part_id,
                "object": "upload.part",
                "created_at": int(time.time()),
                "upload_id": upload_id,
            }
        )

    @router.post("/uploads/{upload_id}/complete")
    async def complete_upload(upload_id: str, request: Request) -> JSONResponse:
        body = await request.json()
        if (reply := await scripted(request, body)) is not None:
            return reply
        upload = state().uploads.get(upload_id)
        if upload is None:
            return not_found("upload")
        data = b"".join(state().parts[p] for p in body["part_ids"])
        md5 = body.get("md5")
        if len(data) != upload["bytes"] or (
            md5 and hashlib.md5(data).hexdigest() != md5
        ):
            return error_response(400, retry_after=None)
        upload["status"] = "completed"
        upload["file"] = file_object(
            state().new_id("file"), upload["filename"], data, upload["purpose"]
        )
        return JSONResponse(upload)

    def event(job_id: str, message: str, kind: str = "message") -> None:
        events = state().events[job_id]
        events.insert(
            0,
            {  # newest first, as OpenAI lists them
                "id": f"{job_id}-event-{len(events) + 1}",
                "object": "fine_tuning.job.event",
                "created_at": int(time.time()),
                "level": "info",
                "message": message,
                "type": kind,
                "data": None,
            },
        )

    @router.post("/fine_tuning/jobs")
    async def create_job(request: Request) -> JSONResponse:
        body = await request.json()
        if (reply := await scripted(request, body)) is not None:
            return reply
        if body.get("training_file") not in state().files:
            return not_found("training file")
        method = body.get("method") or {"type": "supervised", "supervised": {}}
        hyper = (method.get(method.get("type", ""), {}) or {}).get(
            "hyperparameters", {}
        )
        job_id = state().new_id("ftjob")
        job = {
            "id": job_id,
            "object": "fine_tuning.job",
            "created_at": int(time.time()),
            "error": None,
            "fine_tuned_model": None,
            "finished_at": None,
            "hyperparameters": {
                k: hyper.get(k, "auto")
                for k in ("n_epochs", "batch_size", "learning_rate_multiplier")
            },
            "model": body["model"],
            "organization_id": "org-test",
            "result_files": [],
            "seed": body.get("seed", 42),
            "status": "queued",
            "trained_tokens": None,
            "training_file": body["training_file"],
            "validation_file": body.get("validation_file"),
            "method": method,
            "suffix": body.get("suffix"),
            "metadata": body.get("metadata"),
        }
        state().jobs[job_id] = job
        job["_outcome"] = state().outcomes.pop(0) if state().outcomes else None
        job["_polls"] = 0
        state().events[job_id] = []
        state().checkpoints[job_id] = []
        event(job_id, f"Created fine-tuning job: {job_id}")
        return lost(server.finetune_requests[-1].behaviour, JSONResponse(_public(job)))

    @router.get("/fine_tuning/jobs")
    async def list_jobs(request: Request) -> JSONResponse:
        if (reply := await scripted(request, None)) is not None:
            return reply
        wanted = {
            k[len("metadata[") : -1]: v
            for k, v in request.query_params.items()
            if k.startswith("metadata[") and k.endswith("]")
        }
        jobs = [
            j
            for j in reversed(state().jobs.values())  # newest first
            if all((j.get("metadata") or {}).get(k) == v for k, v in wanted.items())
        ]
        return JSONResponse(page([_public(j) for j in jobs], request))

    def advance(job: dict[str, Any]) -> None:
        job_id = job["id"]
        if job["status"] in ("queued", "validating_files"):
            job["status"] = "running"
            event(job_id, "Fine-tuning job started")
            event(job_id, "Step 1/2: training loss=1.20", "metrics")
        elif job["status"] == "running":
            job["_polls"] += 1
            if job["_polls"] < state().running_polls:
                return
            job["finished_at"] = int(time.time())
            outcome = job["_outcome"] or state().outcome
            if outcome in _FAILURES:
                job["status"] = "failed"
                job["error"] = _FAILURES[outcome]
                event(job_id, "Fine-tuning job failed")
                return
            job["status"] = "succeeded"
            job["trained_tokens"] = 1234
            job["fine_tuned_model"] = (
                # as OpenAI names them: one name per job, ending in a short job id
                f"ft:{job['model']}:{job['suffix'] or 'model'}:{job_id.split('-')[-1]}"
            )
            for step, loss in ((1, 1.2), (2, 0.6)):
                state().checkpoints[job_id].insert(
                    0,
                    {
                        "id": f"{job_id}-ckpt-{step}",
                        "object": "fine_tuning.job.checkpoint",
                        "created_at": int(time.time()),
                        "fine_tuning_job_id": job_id,
                        "fine_tuned_model_checkpoint": f"{job['fine_tuned_model']}:ckpt-step-{step}",
                        "metrics": {
                            "step": step,
                            "train_loss": loss,
                            "train_mean_token_accuracy": 0.5 + step / 5,
                        },
                        "step_number": step,
                    },
                )
            event(job_id, "Step 2/2: training loss=0.60", "metrics")
            event(job_id, "The job has successfully completed")

    @router.get("/fine_tuning/jobs/{job_id}")
    async def get_job(job_id: str, request: Request) -> JSONResponse:
        if (reply := await scripted(request, None)) is not None:
            return reply
        job = state().jobs.get(job_id)
        if job is None:
            return not_found("fine-tuning job")
        advance(job)
        return JSONResponse(_public(job))

    def page(items: list[dict[str, Any]], request: Request) -> dict[str, Any]:
        after = request.query_params.get("after")
        limit = int(request.query_params.get("limit", 20))
        ids = [i["id"] for i in items]
        start = ids.index(after) + 1 if after in ids else 0
        data = items[start : start + limit]
        return {"object": "list", "data": data, "has_more": start + limit < len(items)}

    @router.get("/fine_tuning/jobs/{job_id}/events")
    async def list_events(job_id: str, request: Request) -> JSONResponse:
        if (reply := await scripted(request, None)) is not None:
            return reply
        if job_id not in state().jobs:
            return not_found("fine-tuning job")
        return JSONResponse(page(state().events[job_id], request))

    @router.get("/fine_tuning/jobs/{job_id}/checkpoints")
    async def list_checkpoints(job_id: str, request: Request) -> JSONResponse:
        if (reply := await scripted(request, None)) is not None:
            return reply
        if job_id not in state().jobs:
            return not_found("fine-tuning job")
        return JSONResponse(page(state().checkpoints[job_id], request))

    @router.post("/fine_tuning/jobs/{job_id}/cancel")
    async def cancel_job(job_id: str, request: Request) -> JSONResponse:
        if (reply := await scripted(request, None)) is not None:
            return reply
        job = state().jobs.get(job_id)
        if job is None:
            return not_found("fine-tuning job")
        if job["status"] not in ("succeeded", "failed", "cancelled"):
            job["status"] = "cancelled"
            job["finished_at"] = int(time.time())
            event(job_id, "Fine-tuning job cancelled")
        return JSONResponse(_public(job))

    return router


def _multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """Form fields of a multipart/form-data body: name -> (filename or None, bytes).

    A small exact parser (python-multipart is not installed here): parts are split on the
    boundary and their bytes kept as sent, so uploaded data can be compared byte for byte.
    """
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if match is None:
        return {}
    delimiter = b"--" + match.group(1).encode()
    fields: dict[str, tuple[str | None, bytes]] = {}
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        data = data.removesuffix(b"\r\n")
        disposition = head.decode("latin-1")
        name = re.search(r'\bname="([^"]*)"', disposition)
        filename = re.search(r'\bfilename="([^"]*)"', disposition)
        if name is not None:
            fields[name.group(1)] = (filename.group(1) if filename else None, data)
    return fields
