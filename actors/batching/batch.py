"""One job through the OpenAI Batch API: write the requests as JSONL, upload it (purpose
"batch"), create the batch, poll it with a doubling wait, read the output and error files, and
send the failed lines again in a new batch (up to `max_rounds` batches in all). What is still
failed after that is returned to the caller, which answers it another way (moderation: the
local fallback). Each batch is recorded in `model_batches` with its counts and usage; the
lines' bodies are not stored (they may hold page text).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from actors import telemetry
from actors.openai_client import OpenAIApi
from configs.batching import BatchSettings

__all__ = ["BatchOutcome", "run_batch"]

log = logging.getLogger(__name__)
_TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})


@dataclass
class BatchOutcome:
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)  # custom_id -> response body
    failed: dict[str, str] = field(default_factory=dict)  # custom_id -> error code, after every round
    batch_ids: list[str] = field(default_factory=list)
    retried_lines: int = 0
    retried: set[str] = field(default_factory=set)  # custom_ids sent again after a failed line
    tokens_in: int = 0
    tokens_out: int = 0


async def run_batch(api: OpenAIApi, kind: str, endpoint: str, lines: Mapping[str, dict[str, Any]],
                    settings: BatchSettings, pool: asyncpg.Pool | None = None,
                    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep) -> BatchOutcome:
    """`lines`: custom_id -> request body for `endpoint` ("/v1/moderations", "/v1/chat/completions")."""
    out = BatchOutcome()
    pending = dict(lines)
    for round_no in range(settings.max_rounds):
        if not pending:
            break
        if round_no:
            out.retried_lines += len(pending)
            out.retried.update(pending)
        before = (out.tokens_in, out.tokens_out)
        telemetry.model_inflight(kind, len(pending))  # sent, not answered yet
        try:
            errors = await _one_batch(api, kind, endpoint, pending, settings, pool, sleep, out)
        finally:
            telemetry.model_inflight(kind, -len(pending))
        # Cost is the caller's (it knows the prices); calls and tokens are counted here.
        telemetry.record_model_calls(kind, "batch", len(pending), tokens_in=out.tokens_in - before[0],
                                     tokens_out=out.tokens_out - before[1])
        pending = {cid: lines[cid] for cid in errors}
        out.failed = errors
    return out


async def _one_batch(api: OpenAIApi, kind: str, endpoint: str, lines: Mapping[str, dict[str, Any]],
                     settings: BatchSettings, pool: asyncpg.Pool | None,
                     sleep: Callable[[float], Awaitable[object]], out: BatchOutcome) -> dict[str, str]:
    client = api.client
    data = "".join(json.dumps({"custom_id": cid, "method": "POST", "url": endpoint, "body": body},
                              separators=(",", ":")) + "\n" for cid, body in lines.items()).encode()
    upload = await api.call("batch upload", lambda: client.files.create(
        file=("batch.jsonl", io.BytesIO(data)), purpose="batch"))
    batch = await api.call("batch create", lambda: client.batches.create(
        input_file_id=upload.id, endpoint=endpoint, completion_window=settings.completion_window))  # type: ignore[arg-type]
    out.batch_ids.append(batch.id)
    if pool is not None:
        await pool.execute("INSERT INTO model_batches (batch_id, kind, status, input_file_id, lines)"
                           " VALUES ($1, $2, $3, $4, $5)", batch.id, kind, batch.status, upload.id, len(lines))
    batch = await _wait(api, batch, settings, sleep)
    errors: dict[str, str] = {cid: f"batch_{batch.status}" for cid in lines}  # unless answered below
    tokens_in = tokens_out = 0
    if batch.output_file_id:
        for row in await _jsonl(api, batch.output_file_id):
            response = row.get("response") or {}
            if response.get("status_code") == 200 and row.get("custom_id") in errors:
                body = response.get("body") or {}
                out.answers[row["custom_id"]] = body
                errors.pop(row["custom_id"])
                usage = body.get("usage") or {}
                tokens_in += int(usage.get("prompt_tokens") or 0)
                tokens_out += int(usage.get("completion_tokens") or 0)
    if batch.error_file_id:
        for row in await _jsonl(api, batch.error_file_id):
            if row.get("custom_id") in errors:
                errors[row["custom_id"]] = str((row.get("error") or {}).get("code") or "error")
    out.tokens_in += tokens_in
    out.tokens_out += tokens_out
    if pool is not None:
        await pool.execute("UPDATE model_batches SET status = $2, output_file_id = $3, error_file_id = $4,"
                           " completed = $5, failed = $6, tokens_in = $7, tokens_out = $8, finished_at = now()"
                           " WHERE batch_id = $1", batch.id, batch.status, batch.output_file_id,
                           batch.error_file_id, len(lines) - len(errors), len(errors), tokens_in, tokens_out)
    log.info("batch %s (%s): %s, %d of %d lines answered", batch.id, kind, batch.status,
             len(lines) - len(errors), len(lines))
    return errors


async def _wait(api: OpenAIApi, batch: Any, settings: BatchSettings,
                sleep: Callable[[float], Awaitable[object]]) -> Any:
    """Poll until the batch ends, waiting poll_initial_s, doubling up to poll_max_s; past
    max_wait_s the batch is cancelled and its lines count as failed."""
    client = api.client
    deadline = time.monotonic() + settings.max_wait_s
    wait = settings.poll_initial_s
    while batch.status not in _TERMINAL:
        if time.monotonic() >= deadline:
            batch = await api.call("batch cancel", lambda: client.batches.cancel(batch.id))
            batch.status = "expired"
            break
        await sleep(wait)
        wait = min(settings.poll_max_s, wait * 2)
        batch = await api.call("batch poll", lambda: client.batches.retrieve(batch.id))
    return batch


async def _jsonl(api: OpenAIApi, file_id: str) -> list[dict[str, Any]]:
    reply = await api.call("batch result", lambda: api.client.files.content(file_id))
    return [json.loads(line) for line in reply.text.splitlines() if line.strip()]
