"""Quality scores and context for one finalising session, from what the store holds.

Runs in a Ray task. The events are the stored, redacted ones; screenshot quality comes from
each compressed frame's local measurements (near-duplicates count once, as the frame they
repeat); the vision provider's page analyses are summarised beside them. The verdict
(`rejected`) is recorded with the scores; the finalizer turns it into the session's status.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from actors.context import analyze_context
from actors.ingest.rows import as_event, jsonb
from actors.processing.task_resources import TaskResources
from actors.context.scoring import SessionFacts, score_session
from actors.storage import processing_repo as repo

__all__ = ["analyze_session", "vision_summary"]



def vision_summary(shots: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts of what the screenshots show and where each analysis came from."""
    sources: Counter[str] = Counter()
    page_types: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    flags: Counter[str] = Counter()
    for row in shots:
        if row["status"] != "compressed":
            continue
        sources[row["vision_source"] or "local"] += 1
        local = jsonb(row["local_vision"]) or {}
        for flag in ("blank", "blurry", "modal_detected"):
            flags[flag] += bool(local.get(flag))
        vision = jsonb(row["vision"])
        if isinstance(vision, Mapping):
            page_types[str(vision.get("page_type", "unknown"))] += 1
            stages[str(vision.get("decision_stage", "unknown"))] += 1
    return {"sources": dict(sources), "page_types": dict(page_types),
            "decision_stages": dict(stages), "local_flags": dict(flags)}


async def analyze_session(res: TaskResources, session_id: uuid.UUID) -> dict[str, Any]:
    session = await repo.session_row(res.pool, session_id)
    if session is None:
        return {"status": "missing"}
    events = [as_event(r) for r in await repo.event_rows(res.pool, session_id)]
    shots = await repo.screenshot_rows(res.pool, session_id)
    compressed = [s for s in shots if s["status"] == "compressed"]
    qualities = [float(jsonb(s["local_vision"])["quality"]) for s in compressed if s["near_duplicate_of"] is None]
    facts = SessionFacts(
        task=session["task"], finished=True, screenshot_count=len(compressed),
        screenshot_qualities=qualities if compressed else None,
    )
    scores = score_session(events, facts, res.settings.pipeline)
    context = analyze_context(events)
    analysis = {
        "rejected": scores.rejected,
        "quality": scores.model_dump(mode="json"),
        "context": context.model_dump(mode="json"),
        "vision": vision_summary(shots),
        "screenshots": {
            "received": len(shots), "compressed": len(compressed),
            "failed": sum(1 for s in shots if s["status"] == "failed"),
            "near_duplicates": sum(1 for s in compressed if s["near_duplicate_of"] is not None),
        },
        "events": len(events),
    }
    await repo.record_analysis(res.pool, session_id, scores.model_dump(mode="json"), analysis)
    return {"status": "analyzed", "rejected": scores.rejected, "overall": scores.overall}
