"""The vision stage of finalisation: every distinct frame of a session analysed once.

With the `local` provider there is nothing to call: the compress task already measured each
frame. With `openai`, each frame that is not a near-duplicate is looked up in the cache by its
WebP's sha256 (the same picture is never sent twice, across sessions too), and otherwise sent
to the cluster's one VisionService actor, which owns the rate limits and the circuit breaker
(they must be shared by every caller to mean anything). A provider failure is a fallback to
the local measurements, recorded per frame and per call; it never fails the session.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Mapping
from typing import Any

import ray

from actors import telemetry
from actors.batching.collector import batcher
from actors.errors import TracemillError
from actors.processing.task_resources import TaskResources
from actors.storage import processing_repo as repo
from actors.vision.openai_vision import PROMPT_VERSION, OpenAIVision, VisionCall
from actors.vision.service import VisionOutcome, VisionService
from configs.settings import TracemillSettings

__all__ = ["VISION_SERVICE_NAME", "analyze_frames", "vision_service"]

log = logging.getLogger(__name__)
VISION_SERVICE_NAME = "vision-service"


def vision_service(settings: TracemillSettings) -> Any:
    """The named VisionService actor, created by whoever needs it first."""
    return ray.remote(VisionService).options(
        name=VISION_SERVICE_NAME, namespace=settings.shards.namespace, lifetime="detached",
        get_if_exists=True, num_cpus=0.05, max_restarts=-1, max_task_retries=2,
        max_concurrency=1000,
    ).remote(settings.processing.vision)


async def _from_cache(res: TaskResources, session_id: uuid.UUID, row: Mapping[str, Any],
                      call_row: dict[str, Any]) -> bool:
    vision = res.settings.processing.vision
    cached = await repo.vision_cache_get(res.pool, row["webp_sha256"], vision.model, _prompt(vision))
    if cached is None:
        return False
    await repo.record_vision(res.pool, session_id, row["screenshot_id"], json.loads(cached["analysis"]), "cache")
    await repo.vision_call(res.pool, {**call_row, "outcome": "cached"})
    telemetry.record_vision("cached")
    return True


def _prompt(vision: Any) -> str:
    return f"{PROMPT_VERSION}:{vision.image_detail}"  # low- and high-detail answers differ


def _call_row(res: TaskResources, session_id: uuid.UUID, row: Mapping[str, Any]) -> dict[str, Any]:
    return {"session_id": session_id, "screenshot_id": row["screenshot_id"], "image_sha256": row["webp_sha256"],
            "provider": "openai", "model": res.settings.processing.vision.model}


async def _record_ok(res: TaskResources, session_id: uuid.UUID, row: Mapping[str, Any], call: VisionCall) -> None:
    vision = res.settings.processing.vision
    telemetry.record_vision("ok", call.tokens_in, call.tokens_out, call.cost_usd)
    analysis = call.analysis.model_dump(mode="json")
    await repo.vision_cache_put(res.pool, row["webp_sha256"], vision.model, _prompt(vision), analysis,
                                call.tokens_in, call.tokens_out, call.cost_usd)
    await repo.record_vision(res.pool, session_id, row["screenshot_id"], analysis, "openai")
    await repo.vision_call(res.pool, {
        **_call_row(res, session_id, row), "outcome": "ok", "tokens_in": call.tokens_in,
        "tokens_out": call.tokens_out, "cost_usd": call.cost_usd, "attempts": call.attempts,
        "latency_ms": round(call.latency_s * 1000),
    })


async def _analyze_one(res: TaskResources, service: Any, session_id: uuid.UUID, row: Mapping[str, Any]) -> None:
    call_row = _call_row(res, session_id, row)
    if await _from_cache(res, session_id, row, call_row):
        return
    image = await res.store.get(row["webp_key"])
    try:
        outcome = await service.analyze.remote(image, "image/webp", row["webp_width"], row["webp_height"])
    except ray.exceptions.RayError as exc:
        # The service itself is broken (say, no API key: its constructor fails). The frame
        # falls back like any provider failure; the reason says why.
        cause = getattr(exc, "cause", None) or exc
        outcome = VisionOutcome(status="fallback", breaker_state="unknown",
                                fallback_reason=f"error: service unavailable: {type(cause).__name__}")
    telemetry.set_breaker_open(outcome.breaker_state == "open")
    if outcome.status == "ok" and outcome.call is not None:
        await _record_ok(res, session_id, row, outcome.call)
        return
    telemetry.record_vision("fallback")
    await repo.record_vision(res.pool, session_id, row["screenshot_id"], None, "local_fallback")
    await repo.vision_call(res.pool, {**call_row, "outcome": "fallback", "fallback_reason": outcome.fallback_reason})


async def _analyze_batched(res: TaskResources, session_id: uuid.UUID,
                           rows: list[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], int]:
    """The frames not in the cache as lines of the cluster's batcher (actors.batching.collector,
    one job with other sessions' lines); returns the frames it did not answer (a line still
    failed after the batch's retries, an unusable answer, no batch at all), which then go the
    synchronous way, and how many lines it answered."""
    todo = [row for row in rows if not await _from_cache(res, session_id, row, _call_row(res, session_id, row))]
    if not todo:
        return [], 0
    try:
        provider = OpenAIVision(res.settings.processing.vision)
    except TracemillError:
        return todo, 0  # the synchronous service says why, per frame
    try:
        lines = {str(row["screenshot_id"]): provider.request(await res.store.get(row["webp_key"]), "image/webp")
                 for row in todo}
        try:
            outcome = await batcher(res.settings).submit.remote("vision", "/v1/chat/completions", lines)
        except (ray.exceptions.RayError, TracemillError) as exc:
            log.warning("vision batch failed; %d frame(s) go the synchronous way: %s", len(todo), exc)
            return todo, 0
        left = []
        for row in todo:
            body = outcome.answers.get(str(row["screenshot_id"]))
            call = provider.from_batch(body, res.settings.batching.discount) if body else None
            if call is None:
                left.append(row)
                continue
            telemetry.record_model_cost("vision", call.cost_usd)
            await _record_ok(res, session_id, row, call)
        return left, len(todo) - len(left)
    finally:
        await provider.aclose()


async def analyze_frames(res: TaskResources, session_id: uuid.UUID) -> dict[str, Any]:
    rows = [r for r in await repo.screenshot_rows(res.pool, session_id) if r["status"] == "compressed"]
    if res.settings.processing.vision.provider == "local":
        for row in rows:
            if row["vision_source"] is None:
                await repo.record_vision(res.pool, session_id, row["screenshot_id"], None, "local")
        return {"status": "local", "frames": len(rows)}
    todo = [r for r in rows if r["near_duplicate_of"] is None and r["vision_source"] is None]
    batched = 0
    if todo and res.settings.batching.wants("vision"):
        todo, batched = await _analyze_batched(res, session_id, todo)
    service = vision_service(res.settings) if todo else None
    limit = asyncio.Semaphore(res.settings.processing.vision.max_concurrency)

    async def one(row: Mapping[str, Any]) -> None:
        async with limit:
            await _analyze_one(res, service, session_id, row)

    await asyncio.gather(*(one(r) for r in todo))
    # A near-duplicate shows what its original shows: it inherits the analysis, no call.
    fresh = {r["screenshot_id"]: r for r in await repo.screenshot_rows(res.pool, session_id)}
    for row in rows:
        original = fresh.get(row["near_duplicate_of"] or "")
        if original is not None and fresh[row["screenshot_id"]]["vision_source"] is None:
            vision = json.loads(original["vision"]) if original["vision"] else None
            await repo.record_vision(res.pool, session_id, row["screenshot_id"], vision,
                                     original["vision_source"] or "local_fallback")
    return {"status": "analyzed", "frames": len(rows), "called": len(todo), "batched": batched}
