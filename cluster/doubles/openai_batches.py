"""The Batch API of the OpenAI-compatible test server (public reference: POST /v1/batches with an
uploaded JSONL `input_file_id`, GET /v1/batches/{id}, GET /v1/files/{id}/content for the output
and error files). Files are the fine-tuning router's (`server.finetune`).

A batch answers `validating` when created; each GET moves it one step: `in_progress`, then
`completed` with every line answered. A line whose custom_id is in `server.batch_fail_once`
fails the first time it is seen (an error-file line, code `server_error`) and succeeds when it
comes back in a later batch: what a retry of failed lines needs. Answers are what the
synchronous routes answer (`server.batch_answer(url, body)`), with their usage fields.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

__all__ = ["batch_router"]

ENDPOINTS = ("/v1/chat/completions", "/v1/moderations")


def batch_router(server: Any) -> APIRouter:
    router = APIRouter()

    def refuse(status: int, message: str) -> JSONResponse:
        error = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
        return JSONResponse({"error": error}, status_code=status)

    @router.get("/files/{file_id}/content")
    async def file_content(file_id: str) -> Response:
        data = server.finetune.file_data.get(file_id)
        if data is None:
            return refuse(404, "no such file")
        return Response(data, media_type="application/jsonl")

    @router.post("/batches")
    async def create_batch(request: Request) -> JSONResponse:
        body = await request.json()
        file_id, endpoint = body.get("input_file_id"), body.get("endpoint")
        if endpoint not in ENDPOINTS:
            return refuse(400, "unsupported endpoint")
        if file_id not in server.finetune.file_data:
            return refuse(404, "no such file")
        batch_id = f"batch_{uuid.uuid4().hex[:20]}"  # unique across servers: tests share one database
        lines = server.finetune.file_data[file_id].decode().splitlines()
        server.batches[batch_id] = {
            "id": batch_id, "object": "batch", "endpoint": endpoint, "errors": None,
            "input_file_id": file_id, "completion_window": body.get("completion_window", "24h"),
            "status": "validating", "output_file_id": None, "error_file_id": None,
            "created_at": int(time.time()), "completed_at": None, "metadata": body.get("metadata"),
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
        }
        return JSONResponse(server.batches[batch_id])

    @router.get("/batches/{batch_id}")
    async def get_batch(batch_id: str) -> JSONResponse:
        batch = server.batches.get(batch_id)
        if batch is None:
            return refuse(404, "no such batch")
        if batch["status"] == "validating":
            batch["status"] = "in_progress"
        elif batch["status"] == "in_progress":
            run(batch)
        return JSONResponse(batch)

    def run(batch: dict[str, Any]) -> None:
        out, errors = [], []
        for raw in server.finetune.file_data[batch["input_file_id"]].decode().splitlines():
            line = json.loads(raw)
            cid = line["custom_id"]
            if cid in server.batch_fail_once and cid not in server.batch_failed:
                server.batch_failed.add(cid)
                errors.append({"id": f"batch_req_{cid}", "custom_id": cid, "response": None,
                               "error": {"code": "server_error", "message": "scripted line failure"}})
                continue
            answer = server.batch_answer(line["url"], line["body"])
            out.append({"id": f"batch_req_{cid}", "custom_id": cid, "error": None,
                        "response": {"status_code": 200, "request_id": f"req_{cid}", "body": answer}})
        for name, rows in (("output_file_id", out), ("error_file_id", errors)):
            if rows:
                fid = server.finetune.new_id("file")
                server.finetune.file_data[fid] = "".join(json.dumps(r) + "\n" for r in rows).encode()
                server.finetune.files[fid] = {"id": fid, "object": "file", "purpose": "batch_output"}
                batch[name] = fid
        batch["request_counts"].update(completed=len(out), failed=len(errors))
        batch["status"], batch["completed_at"] = "completed", int(time.time())

    return router
