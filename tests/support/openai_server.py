"""A real OpenAI-compatible HTTP server for tests: uvicorn on 127.0.0.1 in a thread.

The code under test uses the real `openai` client against it, so timeouts, retries, status
errors and headers go through the client's full HTTP stack. Behaviours are scripted:

    with OpenAITestServer() as server:
        server.script(["429:2", "500", "timeout:5", "ok", "badjson"])  # one per request
        server.default = "ok"                                         # after the script
        ... OpenAIVision(VisionSettings(base_url=server.base_url, ...)) ...
        assert server.request_count == 5

"ok" answers a chat.completion whose content is a PageAnalysis derived from the image's
sha256; "NNN" answers that HTTP status with an OpenAI-style error body; "429:N" (any NNN:N)
adds `Retry-After: N`; "timeout:S" stalls S seconds (or until the client hangs up), then
answers ok; "badjson" answers content that is not JSON, "badschema" JSON that is not a
PageAnalysis. One APIRouter per API.

Web-agent models: `server.respond_as("oracle", fn)` makes an "ok" answer to that model name
the text `fn(messages)` returns (see tests/support/agent_models.py); other models still get a
PageAnalysis. `server.max_in_flight` is the most chat requests the server held at once
(`server.delay_s` holds each one that long, so that concurrent requests overlap).

The fine-tuning router (files, uploads, fine_tuning/jobs with events, checkpoints, cancel)
keeps its state in `server.finetune` and records each call in `server.finetune_requests`;
the same script applies to its routes ("ok" there means: answer normally; "lost:NNN" on a
job create starts the job but answers NNN, as when a reply is lost). A job answers
queued when created, then each GET moves it one step: running, then `finetune.outcome`
("succeeded", with fine_tuned_model "ft:<model>:<suffix>:<job number>", or "failed").
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from tests.support.net import wait_for

__all__ = [
    "PAGE_TYPES",
    "FineTuneRequest",
    "FineTuneState",
    "OpenAITestServer",
    "RecordedRequest",
]

PAGE_TYPES = ("search_results", "product", "cart", "checkout", "article", "login")
STAGES = ("awareness", "consideration", "decision", "action", "post_action", "unknown")
_MAX_TOKEN_FIELDS = ("max_completion_tokens", "max_tokens")
_ERROR_CODES = {
    429: "rate_limit_exceeded",
    401: "invalid_api_key",
    404: "model_not_found",
}


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
class RecordedRequest:
    model: str | None
    has_image_data_url: bool
    response_format_type: str | None
    max_tokens_field: str | None  # which of the two names the client sent
    authorization: str | None
    behaviour: str


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


class OpenAITestServer:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.default = "ok"
        self._script: deque[str] = deque()
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self.responders: dict[str, Callable[[list[dict[str, Any]]], str]] = {}
        self.in_flight = self.max_in_flight = 0
        self.delay_s = 0.0  # every chat answer waits this long: lets requests overlap
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = FastAPI()
        self.app.include_router(_chat_router(self), prefix="/v1")
        self.app.include_router(_models_router(), prefix="/v1")
        self.finetune = FineTuneState()
        self._finetune_requests: list[FineTuneRequest] = []
        self.app.include_router(_finetune_router(self), prefix="/v1")

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def script(self, behaviours: list[str]) -> None:
        """Replace the queue of behaviours, consumed one per chat request."""
        with self._lock:
            self._script = deque(behaviours)

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self._requests.clear()
            self.default = "ok"
            self._finetune_requests.clear()
            self.finetune = FineTuneState()
            self.responders.clear()
            self.max_in_flight = 0
            self.delay_s = 0.0

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        return len(self.requests)

    @property
    def finetune_requests(self) -> list[FineTuneRequest]:
        with self._lock:
            return list(self._finetune_requests)

    def record_finetune(self, entry: FineTuneRequest) -> None:
        with self._lock:
            self._finetune_requests.append(entry)

    def respond_as(self, model: str, responder: Callable[[list[dict[str, Any]]], str]) -> None:
        """Answer chat requests for `model` with `responder(messages)` (when scripted "ok")."""
        self.responders[model] = responder

    def _enter(self, delta: int) -> None:
        with self._lock:
            self.in_flight += delta
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def next_behaviour(self) -> str:
        with self._lock:
            return self._script.popleft() if self._script else self.default

    def record(self, entry: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(entry)

    def start(self) -> Self:
        # Port 0: the OS picks a free port at bind time (no probe-then-bind race, unlike
        # net.free_port); the real one is read back from the bound socket.
        config = uvicorn.Config(
            self.app, host=self.host, port=0, log_level="warning", lifespan="off"
        )
        server = self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=server.run, daemon=True)
        self._thread.start()
        wait_for(lambda: server.started, timeout_s=10, interval_s=0.02, what="server")
        self.port = server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._server.force_exit = True  # do not wait for scripted slow answers
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def _chat_router(server: OpenAITestServer) -> APIRouter:
    router = APIRouter()

    @router.post("/chat/completions")
    async def chat_completions(request: Request) -> JSONResponse:
        server._enter(+1)
        try:
            await asyncio.sleep(server.delay_s)
            return await answer(request)
        finally:
            server._enter(-1)

    async def answer(request: Request) -> JSONResponse:
        body = await request.json()
        behaviour = server.next_behaviour()
        image = _image_bytes(body.get("messages", []))
        server.record(
            RecordedRequest(
                model=body.get("model"),
                has_image_data_url=image is not None,
                response_format_type=(body.get("response_format") or {}).get("type"),
                max_tokens_field=next(
                    (k for k in _MAX_TOKEN_FIELDS if k in body), None
                ),
                authorization=request.headers.get("authorization"),
                behaviour=behaviour,
            )
        )
        kind, _, arg = behaviour.partition(":")
        if kind.isdigit():
            return _error(int(kind), retry_after=arg or None)
        if kind == "timeout" and await _stalled(request, float(arg or 5)):
            return JSONResponse({}, status_code=499)  # the client has gone
        content = {
            "badjson": "this is { not json",
            "badschema": '{"page_type": "cart"}',
        }.get(kind)
        responder = server.responders.get(body.get("model") or "")
        if content is None and responder is not None:
            content = responder(body.get("messages", []))
        content = content or json.dumps(_analysis(image or b""))
        prompt_tokens = 85 + len(json.dumps(body.get("messages", [])[:1])) // 4
        return JSONResponse(_completion(body.get("model"), content, prompt_tokens))

    return router


def _finetune_router(server: OpenAITestServer) -> APIRouter:
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
        kind, _, arg = behaviour.partition(":")
        if kind.isdigit():
            return _error(int(kind), retry_after=arg or None)
        if kind == "timeout" and await _stalled(request, float(arg or 5)):
            return JSONResponse({}, status_code=499)
        return None

    def lost(behaviour: str, reply: JSONResponse) -> JSONResponse:
        """ "lost:NNN": the request was carried out, but the client gets status NNN."""
        kind, _, arg = behaviour.partition(":")
        return _error(int(arg or 500), retry_after=None) if kind == "lost" else reply

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
            return _error(400, retry_after=None)
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


def _models_router() -> APIRouter:
    router = APIRouter()

    @router.get("/models")
    async def list_models() -> dict[str, Any]:
        owner = {"object": "model", "created": 0, "owned_by": "tracemill-test"}
        data = [{"id": m, **owner} for m in ("gpt-4o-mini", "gpt-4o")]
        return {"object": "list", "data": data}

    return router


def _completion(model: str | None, content: str, prompt_tokens: int) -> dict[str, Any]:
    completion_tokens = max(1, len(content) // 4)
    message = {"role": "assistant", "content": content, "refusal": None}
    return {
        "id": f"chatcmpl-{hashlib.sha256(content.encode()).hexdigest()[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model or "unknown",
        "choices": [
            {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


async def _stalled(request: Request, seconds: float) -> bool:
    """Wait `seconds` or until the client hangs up (True): no handler outlives it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await request.is_disconnected():
            return True
        await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
    return False


def _error(status: int, retry_after: str | None) -> JSONResponse:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    error = {
        "message": f"scripted HTTP {status} from the test server",
        "type": "requests" if status == 429 else kind,
        "param": None,
        "code": _ERROR_CODES.get(status),
    }
    headers = {"retry-after": retry_after} if retry_after else None
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def _image_bytes(messages: list[dict[str, Any]]) -> bytes | None:
    for message in messages:
        content = message.get("content")
        for part in content if isinstance(content, list) else []:
            url = (part.get("image_url") or {}).get("url", "")
            if url.startswith("data:") and ";base64," in url:
                return base64.b64decode(url.split(";base64,", 1)[1])
    return None


def _analysis(image: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(image).digest()
    return {
        "page_type": PAGE_TYPES[digest[0] % len(PAGE_TYPES)],
        "visible_state": f"screenshot {digest.hex()[:12]}",
        "intent_cues": ["compare prices"],
        "decision_stage": STAGES[digest[1] % len(STAGES)],
        "notable_elements": ["search box", "add to cart button"],
        "confidence": round(0.5 + digest[2] / 510, 3),
    }
