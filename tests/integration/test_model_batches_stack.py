"""Vision analyses and the card through the Batch API on the stack (issue 19.4): with
`batching.kinds` vision and card, the vision and cards tasks of a finalised session send their
requests to the cluster's batcher actor, which makes them lines of one batch job on the local
OpenAI-compatible server; a failed line is retried in a second batch; nothing goes the
synchronous way (no chat request to the server), and `model_batches` records the jobs."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import ray

from actors.cards.task import cards_task
from actors.processing.tasks import vision_task
from cluster.doubles.openai_server import OpenAITestServer
from configs.settings import TracemillSettings
from tests.support.client import Api
from tests.support.sessions import record, shop_session, wait_terminal
from tests.support.stack import run_db

CARD = {"title": "Kettle found in one batch", "caption": "The person searched for a kettle. It went to the cart."}


@pytest.fixture(scope="module")
def openai_server() -> Iterator[OpenAITestServer]:
    with OpenAITestServer() as server:
        yield server


def test_vision_and_card_lines_go_through_batches(api: Api, stack: Any, openai_server: OpenAITestServer) -> None:
    events, shots = shop_session(30, 3)
    sid = record(api, events, shots, type="human", task="buy a kettle in a batch")
    assert wait_terminal(api, sid)["status"] in ("ready", "rejected")
    run_db(stack, "UPDATE screenshots SET vision = NULL, vision_source = NULL WHERE session_id = $1", sid)
    frames = run_db(stack, "SELECT screenshot_id FROM screenshots WHERE session_id = $1 AND status = 'compressed'"
                           " AND near_duplicate_of IS NULL ORDER BY screenshot_id", sid)
    assert len(frames) >= 2
    run = uuid.uuid4().hex[:8]  # models no other run has cached answers for
    openai_server.reset()
    openai_server.respond_as(f"card-batch-{run}", lambda _messages: json.dumps(CARD))
    openai_server.batch_fail_once = {f"0/{frames[0]['screenshot_id']}"}
    data = stack.settings.to_args()
    provider = {"provider": "openai", "base_url": openai_server.base_url, "api_key": "sk-test-not-a-real-key"}
    data["processing"] = {**data.get("processing", {}), "vision": provider | {"model": f"vision-batch-{run}"}}
    data["cards"] = provider | {"model": f"card-batch-{run}"}
    data["batching"] = {"enabled": True, "kinds": ["vision", "card"], "collect_s": 0.2,
                        "poll_initial_s": 0.05, "poll_max_s": 0.1}
    settings = TracemillSettings.build(data)

    vision = ray.get(vision_task.remote(settings, uuid.UUID(sid)), timeout=120)
    assert vision["batched"] == len(frames) and vision["called"] == 0
    card = ray.get(cards_task.remote(settings, uuid.UUID(sid)), timeout=120)
    assert card["source"] == "model"
    assert openai_server.request_count == 0  # no synchronous chat call: every line went in a batch

    sources = {r["vision_source"] for r in run_db(
        stack, "SELECT vision_source FROM screenshots WHERE session_id = $1 AND near_duplicate_of IS NULL"
               " AND status = 'compressed'", sid)}
    assert sources == {"openai"}
    calls = run_db(stack, "SELECT outcome, cost_usd FROM vision_calls WHERE session_id = $1 AND model = $2",
                   sid, f"vision-batch-{run}")
    assert len(calls) == len(frames) and all(c["outcome"] == "ok" and c["cost_usd"] > 0 for c in calls)
    stored = json.loads(run_db(stack, "SELECT card::text AS c FROM sessions WHERE session_id = $1", sid)[0]["c"])
    assert stored["title"] == CARD["title"] and stored["batched"] is True
    batch_ids = list(openai_server.batches)
    rows = {r["batch_id"]: r for r in run_db(
        stack, "SELECT batch_id, kind, lines, completed, failed, tokens_in FROM model_batches"
               " WHERE batch_id = ANY($1::text[])", batch_ids)}
    vision_rows = sorted((r for r in rows.values() if r["kind"] == "vision"), key=lambda r: -r["lines"])
    assert [(r["lines"], r["completed"], r["failed"]) for r in vision_rows] == [
        (len(frames), len(frames) - 1, 1), (1, 1, 0)]  # the failed line, retried in a second batch
    assert [r["lines"] for r in rows.values() if r["kind"] == "card"] == [1]
    assert all(r["tokens_in"] > 0 for r in rows.values())

    # The dashboard's backlog panel counts them: this workspace's calls (others' too, so at least ours).
    stats = api.http.get("/v1/stats").json()["backlog"]["models"]
    by_kind = {m["kind"]: m for m in stats}
    assert by_kind["vision"]["calls"] >= len(frames) and by_kind["vision"]["cost_usd"] > 0
    assert by_kind["card"]["batch_lines"] >= 1 and by_kind["card"]["tokens_in"] >= stored["tokens_in"] > 0
    sheet = api.http.get(f"/v1/sessions/{sid}/contact-sheet")
    assert sheet.status_code == 200 and sheet.headers["content-type"] == "image/webp" and sheet.content[:4] == b"RIFF"
    assert api.http.get(f"/v1/sessions/{uuid.uuid4()}/contact-sheet").status_code == 404
