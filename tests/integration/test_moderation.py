"""Moderation of training data on the stack (issue 19.3): steps whose text the OpenAI-compatible
test server scores above the block threshold never enter a dataset (whatever exclude_flagged
says) and the report counts them by category; steps above warn get a pending `moderation` flag
naming the category; only scores are stored, never the text; when the provider errors or is
absent the local fallback scores, and says so."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from actors.moderation.gate import GateStats, moderate_sessions
from cluster.doubles.openai_server import OpenAITestServer
from configs.batching import BatchSettings
from configs.moderation import ModerationSettings
from tests.support.client import Api, new_id
from tests.support.sessions import T0, wait_terminal
from tests.support.datasets import built_dataset
from tests.support.stack import make_key, run_db

WORD = f"md{uuid.uuid4().hex[:8]}"


def _record(api: Api, task: str, texts: dict[int, str], n: int = 8) -> str:
    sid = api.create_session(session_id=new_id(), task=task, type="human")
    events = [{"seq": 0, "type": "navigation", "ts": T0, "url": "https://mod.example/", "title": "Forum"}]
    # Words of its own in every session: the build drops examples repeated across sessions.
    events += [{"seq": s, "type": "click", "ts": T0 + s * 800, "url": "https://mod.example/", "x": 10, "y": 10,
                "target": {"tag": "button", "text": texts.get(s, f"Reply {s} {sid[:8]}"),
                           "selectors": [{"kind": "testid", "value": f"r{s}", "unique": True}]}}
               for s in range(1, n)]
    assert api.post_events(sid, events).status_code == 200
    assert api.http.post(f"/v1/sessions/{sid}/finish", json={}).status_code == 202
    wait_terminal(api, sid)
    return sid


def _moderate(stack: Any, settings: ModerationSettings, sids: list[str],
              batching: BatchSettings | None = None) -> GateStats:
    async def go() -> GateStats:
        pool = await asyncpg.create_pool(stack.settings.database.url.get_secret_value(), min_size=0, max_size=2)
        try:
            return await moderate_sessions(pool, settings, [uuid.UUID(s) for s in sids], batching=batching)
        finally:
            await pool.close()

    return asyncio.run(go())


def _build(stack: Any, tmp_path: Path, capsys: pytest.CaptureFixture, task: str, exclude: bool) -> dict[str, Any]:
    return built_dataset(stack, tmp_path, capsys, {
        "name": "moderated", "selection": {"task_contains": task, "exclude_flagged": exclude,
                                           "statuses": ["ready", "rejected"]},
        "split": {"validation_share": 0.34, "seed": 1}}, name=f"dataset-{exclude}")


def _scores(stack: Any, sid: str) -> dict[int, Any]:
    rows = run_db(stack, "SELECT * FROM moderation_scores WHERE session_id = $1", uuid.UUID(sid))
    return {r["seq"]: r for r in rows}


def test_a_toxic_step_is_flagged_and_kept_out_of_datasets(stack: Any, api: Api, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    task = f"Post a reply {WORD}"
    # 14 steps each: the split puts whole sessions on either side (by their random ids), and
    # whichever lands in validation, the train side must keep OpenAI's 10 examples.
    toxic = _record(api, task, {5: "you zzharass loser"}, n=14)
    warned = _record(api, task, {5: "zzwarn this"}, n=14)
    clean = _record(api, task, {}, n=14)
    with OpenAITestServer() as server:
        stats = _moderate(stack, ModerationSettings(provider="openai", base_url=server.base_url), [toxic, warned, clean])
        assert server.moderation_inputs == stats.steps > 0
    assert stats.sources == {"openai": stats.steps} and stats.flagged >= 2 and not stats.fallbacks
    blocked, warn = _scores(stack, toxic)[5], _scores(stack, warned)[5]
    assert (blocked["decision"], blocked["category"], blocked["score"]) == ("block", "harassment", 0.93)
    assert (warn["decision"], warn["category"]) == ("warn", "harassment")
    assert {r["decision"] for r in _scores(stack, clean).values()} == {"ok"}
    assert all(r["source"] == "openai" and r["model"] == "omni-moderation-latest"
               for r in _scores(stack, toxic).values())
    flags = run_db(stack, "SELECT session_id, seq, reason, state, note FROM review_flags WHERE session_id = ANY($1)",
                   [uuid.UUID(s) for s in (toxic, warned, clean)])
    expected = {(sid, seq) for sid in (toxic, warned, clean) for seq, r in _scores(stack, sid).items()
                if r["decision"] != "ok"}
    assert {(toxic, 5), (warned, 5)} <= expected
    assert {(str(f["session_id"]), f["seq"], f["reason"], f["state"]) for f in flags} == {
        (sid, seq, "moderation", "pending") for sid, seq in expected}
    assert all("harassment" in f["note"] and "zz" not in f["note"] for f in flags)  # category, never the text
    stored = run_db(stack, "SELECT scores::text AS s, category FROM moderation_scores WHERE session_id = $1",
                    uuid.UUID(toxic))
    assert not any("zz" in r["s"] for r in stored)
    assert run_db(stack, "SELECT review_state FROM sessions WHERE session_id = $1",
                  uuid.UUID(toxic))[0]["review_state"] == "pending"

    # Without exclude_flagged the warned steps stay; the blocked ones never enter (a step whose
    # history or candidates repeat the text is scored, and blocked, with it).
    blocked_seqs = {s for s, r in _scores(stack, toxic).items() if r["decision"] == "block"}
    warn_seqs = {s for s, r in _scores(stack, warned).items() if r["decision"] == "warn"}
    assert 5 in blocked_seqs and 5 in warn_seqs and min(blocked_seqs) == 5
    everything = _build(stack, tmp_path, capsys, task, exclude=False)
    counts = everything["steps"]
    # (ranking rows are counted; a step with a single candidate makes none)
    assert counts.get(toxic, 0) < counts[clean] and counts[warned] == counts[clean], (counts, blocked_seqs)
    assert b"zzharass" not in everything["text"] and b"zzwarn" in everything["text"]
    blocked_report = everything["report"]["blocked_by_moderation"]
    assert {k: blocked_report[k] for k in ("steps", "sessions", "steps_by_category", "steps_by_source",
                                            "warned_steps")} == {
        "steps": len(blocked_seqs), "sessions": 1, "steps_by_category": {"harassment": len(blocked_seqs)},
        "steps_by_source": {"openai": len(blocked_seqs)}, "warned_steps": len(warn_seqs)}
    assert blocked_report["this_build"]["sessions_scored"] == 0  # scored once, not again
    # With it, the warned steps' pending flags leave them out too, counted with the reviewers' flags.
    reviewed = _build(stack, tmp_path, capsys, task, exclude=True)
    assert reviewed["steps"].get(warned, 0) < counts[clean] and b"zzwarn" not in reviewed["text"]
    assert reviewed["report"]["excluded_by_review"]["steps_by_reason"] == {
        "moderation": len(blocked_seqs) + len(warn_seqs)}


def test_the_local_fallback_scores_when_the_provider_errors_or_is_absent(stack: Any, api: Api) -> None:
    task = f"Fallback {WORD}"
    rude = _record(api, task, {2: "shut up you fucking idiot"})
    selfharm = _record(api, task, {5: "I want to kill myself"})
    with OpenAITestServer() as server:
        server.default = "500"
        stats = _moderate(stack, ModerationSettings(provider="openai", base_url=server.base_url,
                                                    backoff_base_s=0.01), [rude])
        assert server.request_count == 2  # max_attempts, then local
    assert stats.fallbacks == {"http_500": 1} and stats.sources == {"local": stats.steps}
    row = _scores(stack, rude)[2]
    assert (row["source"], row["decision"]) == ("local", "block") and row["category"] in ("toxicity", "harassment")
    absent = _moderate(stack, ModerationSettings(provider="openai", base_url="http://127.0.0.1:9/v1",
                                                 backoff_base_s=0.01), [selfharm])
    assert absent.fallbacks == {"connection_error": 1}
    row = _scores(stack, selfharm)[5]
    assert (row["source"], row["decision"]) == ("local", "block") and json.loads(row["scores"])["self_harm"] >= 0.8
    assert {r["decision"] for seq, r in _scores(stack, selfharm).items() if seq < 5} == {"ok"}


def test_moderation_in_batches_retries_failed_lines(stack: Any, api: Api) -> None:
    task = f"Batched {WORD}"
    sids = [_record(api, task, {3: "you zzharass"}), _record(api, task, {})]
    with OpenAITestServer() as server:
        server.batch_fail_once = {f"{sids[0]}:3", f"{sids[1]}:2"}
        stats = _moderate(stack, ModerationSettings(provider="openai", base_url=server.base_url), sids,
                          BatchSettings(enabled=True, poll_initial_s=0.05, poll_max_s=0.1))
        assert server.moderation_inputs == stats.steps  # each answered once: the two failed lines the second time
        batch_ids = list(server.batches)
    assert stats.batches == 2 and stats.retried_lines == 2 and not stats.fallbacks
    assert stats.sources == {"openai": stats.steps}
    assert _scores(stack, sids[0])[3]["decision"] == "block"
    rows = run_db(stack, "SELECT batch_id, kind, status, lines, completed, failed FROM model_batches"
                         " WHERE batch_id = ANY($1) ORDER BY created_at", batch_ids)
    assert [(r["kind"], r["status"], r["lines"], r["completed"], r["failed"]) for r in rows] == [
        ("moderation", "completed", stats.steps, stats.steps - 2, 2), ("moderation", "completed", 2, 2, 0)]


def test_thresholds_are_per_workspace_and_set_only_by_admins(stack: Any, api: Api) -> None:
    admin = Api(stack.endpoint, make_key(stack, ["admin"]))
    analyst = Api(stack.endpoint, make_key(stack, ["read"]))
    shown = analyst.http.get("/v1/moderation/thresholds")
    assert shown.status_code == 200, shown.text
    assert {k: shown.json()[k] for k in ("warn", "block")} == {"warn": 0.6, "block": 0.8}
    denied = analyst.http.put("/v1/moderation/thresholds", json={"warn": 0.5, "block": 0.9})
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "forbidden"
    assert api.http.put("/v1/moderation/thresholds", json={"warn": 0.5, "block": 0.9}).status_code == 403
    for bad in ({"warn": 0.9, "block": 0.5}, {"warn": 2, "block": 3}, {"warn": 0.1}, {"warn": 0.1, "block": 0.2, "x": 1}):
        refused = admin.http.put("/v1/moderation/thresholds", json=bad)
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_input", bad
    assert analyst.http.get("/v1/moderation/thresholds").json()["default"] is True  # nothing changed
    try:
        put = admin.http.put("/v1/moderation/thresholds", json={"warn": 0.5, "block": 0.95})
        assert put.status_code == 200 and put.json()["default"] is False and put.json()["block"] == 0.95
        # At block 0.95 a 0.93 harassment score is a warning: flagged, not blocked.
        sid = _record(api, f"Thresholds {WORD}", {2: "zzharass"})
        with OpenAITestServer() as server:
            _moderate(stack, ModerationSettings(provider="openai", base_url=server.base_url), [sid])
        assert _scores(stack, sid)[2]["decision"] == "warn"
        audited = run_db(stack, "SELECT details FROM audit_log WHERE action = 'moderation.thresholds'"
                                " ORDER BY at DESC LIMIT 1")
        assert json.loads(audited[0]["details"]) == {"warn": 0.5, "block": 0.95}
    finally:  # the stack's other tests use the default workspace
        run_db(stack, "DELETE FROM moderation_thresholds")
