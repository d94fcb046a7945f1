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
PageAnalysis. One APIRouter per API, so fine-tuning endpoints can join later.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Self

import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from tests.support.net import wait_for

__all__ = ["PAGE_TYPES", "OpenAITestServer", "RecordedRequest"]

PAGE_TYPES = ("search_results", "product", "cart", "checkout", "article", "login")
STAGES = ("awareness", "consideration", "decision", "action", "post_action", "unknown")
_MAX_TOKEN_FIELDS = ("max_completion_tokens", "max_tokens")
_ERROR_CODES = {
    429: "rate_limit_exceeded",
    401: "invalid_api_key",
    404: "model_not_found",
}


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
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = FastAPI()
        self.app.include_router(_chat_router(self), prefix="/v1")
        self.app.include_router(_models_router(), prefix="/v1")

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

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        return len(self.requests)

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
        }.get(kind) or json.dumps(_analysis(image or b""))
        prompt_tokens = 85 + len(json.dumps(body.get("messages", [])[:1])) // 4
        return JSONResponse(_completion(body.get("model"), content, prompt_tokens))

    return router


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
