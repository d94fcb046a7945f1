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
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from cluster.doubles.net import wait_for
from cluster.doubles.openai_batches import batch_router
from cluster.doubles.openai_common import RequestWindow, forced_reply, limited
from cluster.doubles.openai_finetune import FineTuneRequest, FineTuneState, finetune_router

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


@dataclass(frozen=True)
class RecordedRequest:
    model: str | None
    has_image_data_url: bool
    response_format_type: str | None
    max_tokens_field: str | None  # which of the two names the client sent
    authorization: str | None
    behaviour: str


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
        self.app.include_router(finetune_router(self), prefix="/v1")
        # Moderation: a text scores each category of the terms it contains (case-insensitive),
        # 0.0005 otherwise; moderation_inputs counts the texts scored.
        self.moderation_terms: dict[str, dict[str, float]] = dict(MODERATION_TERMS)
        self.moderation_inputs = 0
        self.app.include_router(_moderation_router(self), prefix="/v1")
        # Batch API (cluster/doubles/openai_batches.py) and a request limit with OpenAI's headers.
        self.batches: dict[str, dict[str, Any]] = {}
        self.batch_fail_once: set[str] = set()
        self.batch_failed: set[str] = set()
        self.window: RequestWindow | None = None
        self.app.include_router(batch_router(self), prefix="/v1")

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
            self.moderation_terms = dict(MODERATION_TERMS)
            self.moderation_inputs = 0
            self.batches, self.batch_fail_once, self.batch_failed = {}, set(), set()
            self.window = None

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

    def limit_requests(self, limit: int, window_s: float) -> RequestWindow:
        """Answer at most `limit` chat/moderation requests per `window_s` (429 past it)."""
        self.window = RequestWindow(limit, window_s)
        return self.window

    def batch_answer(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        """What the synchronous route would answer `body` with (an "ok" behaviour)."""
        if url.endswith("/moderations"):
            return _moderation_reply(self, body)
        responder = self.responders.get(body.get("model") or "")
        content = (responder(body.get("messages", [])) if responder is not None
                   else json.dumps(_analysis(_image_bytes(body.get("messages", [])) or b"")))
        prompt_tokens = 85 + len(json.dumps(body.get("messages", [])[:1])) // 4
        return _completion(body.get("model"), content, prompt_tokens)

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
        if (reply := await forced_reply(request, behaviour)) is not None:
            return reply
        refused, headers = limited(server.window)
        if refused is not None:
            return refused
        kind = behaviour.partition(":")[0]
        content = {
            "badjson": "this is { not json",
            "badschema": '{"page_type": "cart"}',
        }.get(kind)
        responder = server.responders.get(body.get("model") or "")
        if content is None and responder is not None:
            content = responder(body.get("messages", []))
        content = content or json.dumps(_analysis(image or b""))
        prompt_tokens = 85 + len(json.dumps(body.get("messages", [])[:1])) // 4
        return JSONResponse(_completion(body.get("model"), content, prompt_tokens), headers=headers)

    return router


MODERATION_CATEGORIES = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
    "self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "sexual/minors",
    "violence", "violence/graphic",
)
# Made-up marker words, so tests say exactly what should score (and real words do not).
MODERATION_TERMS: dict[str, dict[str, float]] = {
    "zzharass": {"harassment": 0.93, "harassment/threatening": 0.41},
    "zzwarn": {"harassment": 0.66},
    "zzviolent": {"violence": 0.88, "violence/graphic": 0.3},
    "zzselfharm": {"self-harm": 0.91, "self-harm/intent": 0.85},
}


def _moderation_router(server: OpenAITestServer) -> APIRouter:
    """POST /moderations as OpenAI answers it: one result per input, categories and scores."""
    router = APIRouter()

    @router.post("/moderations")
    async def moderations(request: Request) -> JSONResponse:
        body = await request.json()
        behaviour = server.next_behaviour()
        server.record(RecordedRequest(model=body.get("model"), has_image_data_url=False,
                                      response_format_type=None, max_tokens_field=None,
                                      authorization=request.headers.get("authorization"), behaviour=behaviour))
        if (reply := await forced_reply(request, behaviour)) is not None:
            return reply
        refused, headers = limited(server.window)
        if refused is not None:
            return refused
        return JSONResponse(_moderation_reply(server, body), headers=headers)

    return router


def _moderation_reply(server: OpenAITestServer, body: dict[str, Any]) -> dict[str, Any]:
    texts = body.get("input")
    texts = [texts] if isinstance(texts, str) else list(texts or [])
    with server._lock:
        server.moderation_inputs += len(texts)
    return {
        "id": f"modr-{hashlib.sha256(json.dumps(texts).encode()).hexdigest()[:20]}",
        "model": body.get("model") or "omni-moderation-latest",
        "results": [_moderation_result(server.moderation_terms, str(t)) for t in texts],
    }


def _moderation_result(terms: dict[str, dict[str, float]], text: str) -> dict[str, Any]:
    scores = dict.fromkeys(MODERATION_CATEGORIES, 0.0005)
    lowered = text.lower()
    for term, hits in terms.items():
        if term in lowered:
            for cat, value in hits.items():
                scores[cat] = max(scores[cat], value)
    return {
        "flagged": any(v >= 0.5 for v in scores.values()),
        "categories": {k: v >= 0.5 for k, v in scores.items()},
        "category_scores": scores,
        "category_applied_input_types": {k: ["text"] for k in scores},
    }


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
